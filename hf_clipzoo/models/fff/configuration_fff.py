"""Configuration of FFF (Bulat et al., CVPR 2024, arXiv 2405.10286)."""

from ...losses.positives import COMBINATIONS, TEXT_TEXT_REFERENCES
from ...validation import BOOLEAN, Number, OneOf, check_fields
from ..clip.configuration_clip import ZooCLIPConfig

MINING_SOURCES = ("model", "teacher", "precomputed")
COSINE_THRESHOLD = Number(float, minimum=-1, maximum=1, optional=True)
FFF_FIELDS = {
    "mining": BOOLEAN,
    "mining_image_text_threshold": COSINE_THRESHOLD,
    "mining_image_image_threshold": COSINE_THRESHOLD,
    "mining_text_text_threshold": COSINE_THRESHOLD,
    "mining_combination": OneOf(COMBINATIONS),
    "mining_text_text_reference": OneOf(TEXT_TEXT_REFERENCES),
    "mining_source": OneOf(MINING_SOURCES),
}


class FFFConfig(ZooCLIPConfig):
    r"""
    Configuration of [`FFFModel`]: the zoo's CLIP dual encoder (all of [`ZooCLIPConfig`]'s fields, same towers) trained
    with FFF's three fixes — positives mined on the fly, several captions per image in the same batch, and the sigmoid
    loss over an arbitrary positive mask with a learnable scale and bias.

    No official code exists and the paper's mining rule and thresholds are not public (see the project's
    `methods/fff.md`): every such choice below is a field, and its default is marked *unverified*.

    Args:
        loss_type (`str`, *optional*, defaults to `"sigmoid"`):
            `"sigmoid"` (the paper: SigLIP's loss with the mined mask) or `"softmax"` (multi-positive InfoNCE with
            soft targets, an ablation).
        logit_scale_init_value (`float`, *optional*, defaults to 2.3026):
            Initial log temperature, `ln 10` as in SigLIP §3.1 (FFF builds on SigLIP's loss).
        logit_bias_init_value (`float`, *optional*, defaults to -10.0):
            Initial bias (SigLIP §3.1). *Unverified* for FFF: a third-party adaptation starts from -2.
        mining (`bool`, *optional*, defaults to `True`):
            Mine extra positives in every training batch (§3, "fix 1"). `False` keeps only each image's own captions.
        mining_image_text_threshold (`float`, *optional*, defaults to `None`):
            Threshold on the image–text cosine `<x_i, t_j>` (in [-1, 1]); `None` disables this condition. *Unverified*.
        mining_image_image_threshold (`float`, *optional*, defaults to 0.9):
            Threshold on the cosine between image i and the image that owns text j. *Unverified*.
        mining_text_text_threshold (`float`, *optional*, defaults to 0.9):
            Threshold on the cosine between image i's reference caption and text j. Identical alt-texts (frequent on
            the web and in the embedded world) score 1 and always pass. *Unverified*.
        mining_combination (`str`, *optional*, defaults to `"any"`):
            `"any"` ORs the enabled conditions (the rule `S_ii > p2 or S_tt > p3` of the adaptation quoted in the
            spec), `"all"` ANDs them. *Unverified*.
        mining_text_text_reference (`str`, *optional*, defaults to `"first"`):
            Which of image i's captions the text–text condition compares: `"first"` (the raw alt-text, first in the
            batch layout), or the `"max"` / `"mean"` over all its captions. *Unverified*.
        mining_source (`str`, *optional*, defaults to `"model"`):
            Features the similarities are computed from: `"model"` (the model being trained, without gradient),
            `"teacher"` (a frozen model; the training script passes its embeddings as `mining_image_embeds` /
            `mining_text_embeds`), or `"precomputed"` (embedding columns stored in the dataset, passed the same way).
            The paper does not say which it uses. *Unverified*.

    Example:

    ```python
    >>> from hf_clipzoo import FFFConfig, FFFModel
    >>> model = FFFModel(FFFConfig.from_preset("world-tiny", mining_text_text_threshold=0.95))
    ```
    """

    model_type = "clipzoo-fff"

    loss_type: str = "sigmoid"
    logit_scale_init_value: float = 2.302585092994046
    logit_bias_init_value: float = -10.0
    mining: bool = True
    mining_image_text_threshold: float | None = None
    mining_image_image_threshold: float | None = 0.9
    mining_text_text_threshold: float | None = 0.9
    mining_combination: str = "any"
    mining_text_text_reference: str = "first"
    mining_source: str = "model"

    def __post_init__(self, **kwargs):
        check_fields(self, FFF_FIELDS)
        thresholds = (
            self.mining_image_text_threshold,
            self.mining_image_image_threshold,
            self.mining_text_text_threshold,
        )
        if self.mining and all(t is None for t in thresholds):
            raise ValueError(
                "`mining=True` needs at least one of mining_image_text_threshold, mining_image_image_threshold and "
                "mining_text_text_threshold; set `mining=False` to train without mined positives."
            )
        super().__post_init__(**kwargs)


__all__ = ["FFF_FIELDS", "MINING_SOURCES", "FFFConfig"]
