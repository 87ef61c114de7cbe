"""Every config of the zoo refuses values that cannot work with a `ValueError` naming the field and the value, warns
about unknown keys, and stays silent for its own saved folders."""

import math
import warnings

import pytest
import transformers

import hf_clipzoo  # noqa: F401  (registers the zoo classes)
from hf_clipzoo.models.ape import APEConfig, APETConfig, TipAdapterConfig, TipAdapterFConfig
from hf_clipzoo.models.clip import ZooCLIPConfig, ZooCLIPModel
from hf_clipzoo.models.clip_fsar import CLIPFSARConfig
from hf_clipzoo.models.diva import DivaConfig
from hf_clipzoo.models.dreamlip import DreamLIPConfig
from hf_clipzoo.models.fff import FFFConfig
from hf_clipzoo.models.groupvit import ZooGroupViTConfig
from hf_clipzoo.models.ma_clip import MACLIPConfig

DIVA_VISION = dict(
    image_size=16, patch_size=4, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4
)


def _micro_clip() -> ZooCLIPConfig:
    return ZooCLIPConfig.from_preset("world-micro")


def _merge(defaults: dict, kwargs: dict) -> dict:
    merged = dict(defaults)
    for key, value in kwargs.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = {**merged[key], **value}
        merged[key] = value
    return merged


# name -> builder of a tiny valid config; keyword arguments override its fields (and tower dict entries).
BUILDERS = {
    "clip": lambda **kw: ZooCLIPConfig.from_preset("world-micro", **kw),
    "fff": lambda **kw: FFFConfig.from_preset("world-micro", **kw),
    "dreamlip": lambda **kw: DreamLIPConfig.from_preset("world-micro", **kw),
    "clip_fsar": lambda **kw: CLIPFSARConfig.from_preset("world-micro", **kw),
    "groupvit": lambda **kw: ZooGroupViTConfig.from_preset("world-micro", **kw),
    "diva": lambda **kw: DivaConfig(
        **_merge(
            dict(
                vision_config=DIVA_VISION,
                projection_dim=24,
                cross_attention_dim=32,
                num_sampled_tokens=7,
                prompt_length=8,
            ),
            kw,
        )
    ),
    "ma_clip": lambda **kw: MACLIPConfig(**_merge(dict(clip_config=_micro_clip(), num_frames=4), kw)),
    "tip_adapter": lambda **kw: TipAdapterConfig(**_merge(dict(encoder_config=_micro_clip(), class_names=["a"]), kw)),
    "tip_adapter_f": lambda **kw: TipAdapterFConfig(
        **_merge(dict(encoder_config=_micro_clip(), class_names=["a"]), kw)
    ),
    "ape": lambda **kw: APEConfig(
        **_merge(dict(encoder_config=_micro_clip(), class_names=["a", "b"], num_refined_channels=4), kw)
    ),
    "ape_t": lambda **kw: APETConfig(
        **_merge(dict(encoder_config=_micro_clip(), class_names=["a", "b"], num_refined_channels=4), kw)
    ),
}

NAN, INF = math.nan, math.inf
# (config, field — "tower.field" for a sub-config —, a value that cannot work)
BAD_VALUES = [
    # ZooCLIPConfig and its transformers towers (shared by FFF, DreamLIP, CLIP-FSAR, MA-CLIP, APE)
    ("clip", "vision_config.image_size", 0),
    ("clip", "vision_config.patch_size", -8),
    ("clip", "vision_config.num_attention_heads", 0),
    ("clip", "vision_config.hidden_size", -32),
    ("clip", "vision_config.num_channels", 0),
    ("clip", "vision_config.hidden_act", "no_such_activation"),
    ("clip", "vision_config.attention_dropout", 1.0),
    ("clip", "vision_config.layer_norm_eps", 0.0),
    ("clip", "vision_config.initializer_range", NAN),
    ("clip", "text_config.vocab_size", 0),
    ("clip", "text_config.max_position_embeddings", 0),
    ("clip", "text_config.num_hidden_layers", 0),
    ("clip", "text_config.eos_token_id", -1),
    ("clip", "text_config.attention_dropout", -0.1),
    ("clip", "logit_scale_init_value", NAN),
    ("clip", "logit_scale_init_value", INF),
    ("clip", "logit_bias_init_value", NAN),
    ("clip", "projection_dim", 0),
    ("clip", "loss_type", "hinge"),
    ("clip", "local_loss", "yes"),
    ("clip", "sigmoid_chunk_size", 0),
    ("clip", "initializer_factor", -1.0),
    # FFF
    ("fff", "mining_image_image_threshold", 1.5),
    ("fff", "mining_text_text_threshold", NAN),
    ("fff", "mining_combination", "xor"),
    ("fff", "mining_text_text_reference", "last"),
    ("fff", "mining_source", "oracle"),
    ("fff", "mining", 1),
    ("fff", "logit_scale_init_value", NAN),
    # DreamLIP
    ("dreamlip", "max_text_length", -1),
    ("dreamlip", "contrastive_loss_weight", -1.0),
    ("dreamlip", "grouping_loss_weight", NAN),
    ("dreamlip", "grouping_threshold", 2.0),
    ("dreamlip", "grouping_norm", "l2"),
    ("dreamlip", "contrastive_mode", "none"),
    ("dreamlip", "local_logit_scale_init_value", NAN),
    ("dreamlip", "text_position_interpolation", "no"),
    ("dreamlip", "vision_config.image_size", 0),
    # CLIP-FSAR
    ("clip_fsar", "num_frames", 0),
    ("clip_fsar", "temporal_heads", 0),
    ("clip_fsar", "temporal_depth", -1),
    ("clip_fsar", "attention_dropout", 1.0),
    ("clip_fsar", "ffn_dropout", NAN),
    ("clip_fsar", "otam_lambda", 0.0),
    ("clip_fsar", "cos_eps", -0.01),
    ("clip_fsar", "text_loss_weight", NAN),
    ("clip_fsar", "video_text_scale_init_value", 0.0),
    ("clip_fsar", "use_text", "yes"),
    # GroupViT and its towers
    ("groupvit", "gumbel_tau", 0.0),
    ("groupvit", "multi_label_loss_weight", NAN),
    ("groupvit", "num_prompts", -1),
    ("groupvit", "multi_label_logit_scale_init_value", NAN),
    ("groupvit", "logit_scale_init_value", INF),
    ("groupvit", "eval_assignment", "argmax"),
    ("groupvit", "projection_intermediate_dim", 0),
    ("groupvit", "share_temperature", "no"),
    ("groupvit", "vision_config.assign_eps", 0.0),
    ("groupvit", "vision_config.depths", []),
    ("groupvit", "vision_config.num_group_tokens", [8, -4, 0]),
    ("groupvit", "vision_config.image_size", 0),
    ("groupvit", "vision_config.num_attention_heads", 0),
    ("groupvit", "vision_config.dropout", 1.5),
    ("groupvit", "text_config.vocab_size", 0),
    # DIVA
    ("diva", "vision_config.image_size", 0),
    ("diva", "vision_config.patch_size", 0),
    ("diva", "cross_attention_dim", 0),
    ("diva", "num_noise_draws", 0),
    ("diva", "clip_image_std", [0.0, 1.0, 1.0]),
    ("diva", "clip_image_mean", [NAN, 0.0, 0.0]),
    ("diva", "eval_token_seed", -1),
    ("diva", "diffusion_loss", "huber"),
    ("diva", "initializer_range", NAN),
    ("diva", "prompt", 3),
    ("diva", "use_clip_projection", "yes"),
    # MA-CLIP
    ("ma_clip", "num_frames", 1),
    ("ma_clip", "adapter_ratio", 0.0),
    ("ma_clip", "adapter_scale", NAN),
    ("ma_clip", "loss_alpha", 1.5),
    ("ma_clip", "otam_lambda", NAN),
    ("ma_clip", "lora_rank", 0),
    ("ma_clip", "lora_target_modules", []),
    ("ma_clip", "prototype_num_heads", 0),
    ("ma_clip", "text_logit_scale", 0.0),
    ("ma_clip", "multimodal_mode", "serial"),
    ("ma_clip", "use_joint_adapter", "yes"),
    ("ma_clip", "bottleneck_width", 0),  # a read-only property (was transformers' "property has no setter")
    # Tip-Adapter / Tip-Adapter-F / APE / APE-T
    ("tip_adapter", "shots_per_class", 0),
    ("tip_adapter", "init_beta", 0.0),
    ("tip_adapter", "init_alpha", NAN),
    ("tip_adapter", "zero_shot_scale", -1.0),
    ("tip_adapter", "embed_dim", 0),
    ("tip_adapter", "class_token_ids", [[]]),
    ("tip_adapter", "class_names", "cat"),
    ("tip_adapter_f", "init_beta", INF),
    ("ape", "num_classes", -3),  # a read-only property
    ("ape", "num_refined_channels", 0),
    ("ape", "num_refined_channels", 10**6),
    ("ape", "criterion_weight", 1.5),
    ("ape", "init_gamma", NAN),
    ("ape_t", "channel_mode", "swap"),
    ("ape_t", "renormalize", "yes"),
]


def _kwargs(field: str, value) -> dict:
    if "." in field:
        tower, key = field.split(".")
        return {tower: {key: value}}
    return {field: value}


@pytest.mark.parametrize(("config", "field", "value"), BAD_VALUES, ids=[f"{c}-{f}={v!r}" for c, f, v in BAD_VALUES])
def test_bad_value_is_refused_naming_field_and_value(config, field, value):
    with pytest.raises(ValueError) as error:
        BUILDERS[config](**_kwargs(field, value))
    message = str(error.value)
    assert f"`{field}`" in message, message
    assert repr(value) in message or str(value) in message, message


def test_issue_examples():
    with pytest.raises(ValueError, match=r"`vision_config.image_size` must be an integer >= 1, got 0"):
        ZooCLIPConfig(vision_config={"image_size": 0})
    with pytest.raises(ValueError, match=r"`logit_scale_init_value` must be a finite number, got nan"):
        ZooCLIPConfig(logit_scale_init_value=math.nan)
    with pytest.raises(ValueError, match=r"`max_text_length` must be an integer >= 1, got -1"):
        DreamLIPConfig(max_text_length=-1)
    with pytest.raises(ValueError, match=r"`bottleneck_width` is computed by MACLIPConfig"):
        MACLIPConfig(bottleneck_width=0)
    with pytest.raises(ValueError, match=r"`num_classes` is computed by APEConfig"):
        APEConfig(num_classes=-3)


@pytest.mark.parametrize("config", sorted(BUILDERS))
def test_unknown_key_warns_and_names_the_closest_field(config):
    with pytest.warns(UserWarning, match=r"unknown key `num_pseudo_caption`"):
        built = BUILDERS[config](num_pseudo_caption=3)
    assert built.num_pseudo_caption == 3  # transformers keeps unknown keys; the warning is what is new


def test_misspelt_field_suggests_the_field():
    with pytest.warns(UserWarning, match=r"unknown key `mining_sourse`.*Did you mean `mining_source`"):
        FFFConfig.from_preset("world-micro", mining_sourse="teacher")


@pytest.mark.parametrize(
    ("config", "tower", "key"),
    [
        ("clip", "vision_config", "imag_size"),
        ("groupvit", "text_config", "vocab_sise"),
        ("diva", "vision_config", "x"),
    ],
)
def test_unknown_key_of_a_tower_warns(config, tower, key):
    with pytest.warns(UserWarning, match=rf"\.{tower} got the unknown key `{key}`"):
        BUILDERS[config](**{tower: {key: 1}})


def _unknown_key_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "unknown key" in str(w.message)]


@pytest.mark.parametrize("config", sorted(BUILDERS))
def test_saved_config_round_trip_is_silent(config, tmp_path):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        built = BUILDERS[config]()
        built.save_pretrained(tmp_path)
        loaded = type(built).from_pretrained(tmp_path)
        auto = transformers.AutoConfig.from_pretrained(tmp_path)
        # What transformers passes along when a model is loaded with overrides.
        type(built).from_pretrained(tmp_path, dtype="float32", attn_implementation="eager")
    assert not _unknown_key_warnings(record)
    assert loaded.to_dict() == built.to_dict()
    assert type(auto) is type(built)


def test_saved_model_folder_round_trip_is_silent(tmp_path):
    """A model folder also carries `architectures`, `auto_map` and `dtype`."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ZooCLIPModel(_micro_clip()).save_pretrained(tmp_path)
        transformers.AutoModel.from_pretrained(tmp_path)
        transformers.AutoConfig.from_pretrained(tmp_path, trust_remote_code=True)
    assert not _unknown_key_warnings(record)


def test_transformers4_common_keys_are_silent():
    """Hub `config.json`s written by transformers 4 carry its common attributes in every tower."""
    legacy = {"torchscript": False, "use_bfloat16": False, "pruned_heads": {}, "tie_word_embeddings": True}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ZooCLIPConfig(text_config={**legacy}, vision_config={**legacy}, **legacy, _name_or_path="x")
    assert not _unknown_key_warnings(record)
