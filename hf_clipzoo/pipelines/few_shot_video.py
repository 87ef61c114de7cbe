"""Few-shot video classification: labelled support videos + query videos -> a ranked label list per query.

`FewShotVideoClassifier` works with any model of the zoo that scores an N-way episode the way CLIP-FSAR does
(`model(support_pixel_values, support_labels, query_pixel_values, class_input_ids, ...)` returning `logits [N·Q, N]` =
negative alignment distances; MA-CLIP takes the class prompts as `input_ids` and returns its fused `probs`). It is a
`transformers.Pipeline` registered as the custom task `few-shot-video-classification`; one input is one *episode*
(supports, their labels and queries), since supports only make sense together with their queries. Every saved
CLIP-FSAR and MA-CLIP folder carries the pipeline, so

    >>> from transformers import pipeline
    >>> classify = pipeline("few-shot-video-classification", model="path/to/clip_fsar", trust_remote_code=True)
    >>> classify(support_videos, support_labels, query_videos)  # per query: [{"label", "score"}, ...] best first

works with or without hf_clipzoo installed (with it, `FewShotVideoClassifier(model, processor)` too).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import torch
from transformers import Pipeline

# Not a Hub task and not a transformers built-in: the Hub's `video-classification` has no support set.
TASK = "few-shot-video-classification"


class FewShotVideoClassifier(Pipeline):
    """Classify query videos among the classes of labelled support videos.

    Args:
        model: a `CLIPFSARModel` or an `MACLIPModel` (or a model with the same episode interface).
        processor: its `CLIPFSARProcessor` / `MACLIPProcessor` (videos -> `pixel_values`, class names -> prompt
            token ids).
        device (*optional*): where to run; defaults to the model's device.

    Call with `support_videos` (K videos for each class; lists of PIL frames, `[T, H, W, 3]` uint8 arrays or video
    files), `support_labels` (their class names, strings; every class needs the same number of videos) and
    `query_videos`, or with one dict (or a list of dicts, one per episode) holding those three keys. Returns, per query,
    `[{"label": name, "score": p}, ...]` sorted by score, where the scores are the softmax over the classes of the
    negative distances (MA-CLIP: its fused prediction; `top_k` keeps the best ones).
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(self, model, processor=None, *, device=None, **kwargs):
        if processor is None:
            raise ValueError("`processor` is required: the model's video processor (videos and class prompts).")
        super().__init__(model=model, processor=processor, device=model.device if device is None else device, **kwargs)

    def __call__(self, support_videos, support_labels=None, query_videos=None, **kwargs):
        if support_labels is None and query_videos is None:  # one episode dict, or a list of them
            return super().__call__(support_videos, **kwargs)
        episode = {"support_videos": support_videos, "support_labels": support_labels, "query_videos": query_videos}
        return super().__call__(episode, **kwargs)

    @property
    def class_text_names(self) -> tuple[str, str]:
        """The forward arguments of the class prompts: CLIP-FSAR names them `class_input_ids` (its forward also takes
        training captions), MA-CLIP plain `input_ids`."""
        if "class_input_ids" in inspect.signature(self.model.forward).parameters:
            return "class_input_ids", "class_attention_mask"
        return "input_ids", "attention_mask"

    def _sanitize_parameters(self, top_k=None):
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"`top_k` must be >= 1 or None, got {top_k!r}.")
        return {}, {}, {"top_k": top_k}

    def preprocess(self, episode):
        if not isinstance(episode, Mapping) or set(episode) != {"support_videos", "support_labels", "query_videos"}:
            raise ValueError(
                "Pass `support_videos, support_labels, query_videos`, or a dict with exactly those keys; got "
                f"{type(episode).__name__}{sorted(episode) if isinstance(episode, Mapping) else ''}."
            )
        support_videos, support_labels = episode["support_videos"], episode["support_labels"]
        query_videos = episode["query_videos"]
        if not isinstance(support_videos, Sequence) or len(support_videos) == 0:
            raise ValueError("`support_videos` must be a non-empty list of videos.")
        if not isinstance(query_videos, Sequence) or len(query_videos) == 0:
            raise ValueError("`query_videos` must be a non-empty list of videos.")
        if (
            isinstance(support_labels, str)
            or not isinstance(support_labels, Sequence)
            or len(support_labels) != len(support_videos)
        ):
            raise ValueError(
                f"`support_labels` must be a list with one class name per support video ({len(support_videos)}), "
                f"got {support_labels!r}."
            )
        if not all(isinstance(label, str) and label.strip() for label in support_labels):
            raise ValueError("`support_labels` must be non-empty strings (the class names).")
        class_names = list(dict.fromkeys(support_labels))  # first-appearance order
        counts = {name: list(support_labels).count(name) for name in class_names}
        if len(set(counts.values())) != 1:
            raise ValueError(f"Every class needs the same number of support videos (K); got {counts}.")
        index = {name: i for i, name in enumerate(class_names)}
        text = self.processor(class_names=class_names, return_tensors="pt")
        ids_name, mask_name = self.class_text_names
        return {
            "support_pixel_values": self.processor(videos=list(support_videos), return_tensors="pt")["pixel_values"],
            "support_labels": torch.tensor([index[name] for name in support_labels]),
            "query_pixel_values": self.processor(videos=list(query_videos), return_tensors="pt")["pixel_values"],
            ids_name: text["input_ids"],
            mask_name: text["attention_mask"],
            "class_names": class_names,
        }

    def _forward(self, model_inputs):
        class_names = model_inputs.pop("class_names")
        was_training = self.model.training
        self.model.eval()
        try:
            output = self.model(**model_inputs)
        finally:
            self.model.train(was_training)
        # MA-CLIP's prediction is its fused probability (text and OTAM softmaxes mixed by α), not one set of logits.
        probs = output.get("probs")
        return {"probs": output.logits.softmax(dim=-1) if probs is None else probs, "class_names": class_names}

    def postprocess(self, model_outputs, top_k=None):
        class_names = model_outputs["class_names"]
        scores = model_outputs["probs"].float().cpu()
        keep = len(class_names) if top_k is None else min(top_k, len(class_names))
        results = []
        for row in scores:
            values, order = row.sort(descending=True)
            results.append(
                [
                    {"label": class_names[i], "score": float(v)}
                    for v, i in zip(values[:keep].tolist(), order[:keep].tolist())
                ]
            )
        return results


__all__ = ["TASK", "FewShotVideoClassifier"]
