"""Conversion of official NVlabs GroupViT checkpoints (`hf_clipzoo.models.groupvit.convert_groupvit`).

The official-layout state dicts are produced by `to_official` below, which inverts the mapping key by key and is
written independently of the converter (no import of its rename table). The split of the fused attention weights is
checked against the official semantics themselves (fused `qkv` reshaped as `(B, N, 3, heads, C/heads)`; the text
tower's `nn.MultiheadAttention`; the projectors' Conv1d-BN-ReLU-Conv1d), so a converter and an inverse that agree on
a wrong order would still fail.
"""

import os
import pickle
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hf_clipzoo.models.groupvit import ZooGroupViTConfig, ZooGroupViTModel
from hf_clipzoo.models.groupvit.convert_groupvit import (
    convert_groupvit_state_dict,
    extract_state_dict,
    infer_groupvit_config,
    load_groupvit_checkpoint,
    load_official_state_dict,
    main,
)

HEADS = dict(vision_num_attention_heads=2, text_num_attention_heads=2)


def to_official(zoo: dict) -> dict:
    """Zoo (transformers `GroupViTModel`) state dict -> official `MultiLabelContrastive` state dict."""
    out = {}
    fused = {}  # official fused key -> {"q": t, "k": t, "v": t}
    for key, value in zoo.items():
        m = re.fullmatch(
            r"vision_model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key
        )
        if m:
            fused.setdefault(f"img_encoder.layers.{m[1]}.blocks.{m[2]}.attn.qkv.{m[4]}", {})[m[3]] = value
            continue
        m = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key)
        if m:
            fused.setdefault(f"text_encoder.transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}", {})[m[2]] = value
            continue
        m = re.fullmatch(r"(visual|text)_projection\.(\d)\.(.+)", key)
        if m:
            tower = "img" if m[1] == "visual" else "text"
            if m[2] == "0":
                out[f"{tower}_projector.linear_hidden.0.{m[3]}"] = value[..., None] if m[3] == "weight" else value
            elif m[2] == "1":
                out[f"{tower}_projector.linear_hidden.1.{m[3]}"] = value
            else:
                out[f"{tower}_projector.linear_out.{m[3]}"] = value[..., None] if m[3] == "weight" else value
            continue
        new = key
        if key.startswith("vision_model."):
            new = new.replace("vision_model.embeddings.position_embeddings", "img_encoder.pos_embed")
            new = new.replace("vision_model.embeddings.patch_embeddings.projection", "img_encoder.patch_embed.proj")
            new = new.replace("vision_model.embeddings.layernorm", "img_encoder.patch_embed.norm")
            new = new.replace("vision_model.layernorm", "img_encoder.norm")
            new = new.replace("vision_model.encoder.stages.", "img_encoder.layers.")
            new = re.sub(r"(img_encoder\.layers\.\d+\.)layers\.", r"\1blocks.", new)
            new = new.replace(".layer_norm1.", ".norm1.").replace(".layer_norm2.", ".norm2.")
            new = new.replace(".self_attn.out_proj.", ".attn.proj.")
            new = new.replace("pre_assign_attn.attn.out_proj.", "pre_assign_attn.attn.proj.")
        elif key.startswith("text_model."):
            new = new.replace("text_model.embeddings.token_embedding", "text_encoder.token_embedding")
            new = new.replace("text_model.embeddings.position_embedding.weight", "text_encoder.positional_embedding")
            new = new.replace("text_model.final_layer_norm", "text_encoder.ln_final")
            new = new.replace("text_model.encoder.layers.", "text_encoder.transformer.resblocks.")
            new = new.replace(".self_attn.out_proj.", ".attn.out_proj.")
            new = new.replace(".layer_norm1.", ".ln_1.").replace(".layer_norm2.", ".ln_2.")
            new = new.replace(".mlp.fc1.", ".mlp.c_fc.").replace(".mlp.fc2.", ".mlp.c_proj.")
        out[new] = value
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def tiny_model(seed: int = 0) -> ZooGroupViTModel:
    torch.manual_seed(seed)
    model = ZooGroupViTModel(ZooGroupViTConfig.from_preset("world-micro"))
    with torch.no_grad():
        # Non-trivial values everywhere the random init leaves constants (LayerNorm, BN statistics, temperatures).
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and ("norm" in name or "projection.1." in name or "logit_scale" in name):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    return model.eval()


def official_checkpoint(model: ZooGroupViTModel) -> dict:
    return {"model": to_official(model.state_dict()), "epoch": 29, "metrics": {"acc1": 43.7}}


def inputs(config, size: int | None = None):
    size = size or config.vision_config.image_size
    torch.manual_seed(1)
    return dict(
        input_ids=torch.tensor([[49406, 320, 1125, 49407], [49406, 2368, 49407, 49407]]),
        pixel_values=torch.randn(2, 3, size, size),
    )


def assert_same_outputs(reference: ZooGroupViTModel, converted: ZooGroupViTModel, size: int | None = None):
    batch = inputs(reference.config, size)
    with torch.no_grad():
        a = reference(**batch, output_segmentation=True)
        b = converted(**batch, output_segmentation=True)
    for name in ("image_embeds", "text_embeds", "logits_per_image", "group_embeds"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for x, y in zip(a.assignment_maps, b.assignment_maps, strict=True):
        assert torch.equal(x, y)


def test_round_trip_pth_zero_missing_keys_identical_outputs(tmp_path):
    model = tiny_model()
    path = tmp_path / "group_vit_tiny.pth"
    torch.save(official_checkpoint(model), path)
    official = load_official_state_dict(path)
    assert all(k.startswith(("img_encoder.", "text_encoder.", "img_", "text_", "logit", "multi")) for k in official)
    config = infer_groupvit_config(official, **HEADS)
    fresh = ZooGroupViTModel(config).eval()
    result = fresh.load_state_dict(convert_groupvit_state_dict(official, config), strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_same_outputs(model, fresh)
    # At a non-default resolution too (interpolated position embeddings, as in the 448 px segmentation protocol).
    assert_same_outputs(model, fresh, size=48)
    loaded = load_groupvit_checkpoint(path, **HEADS)
    assert not loaded.training
    assert_same_outputs(model, loaded)


def test_inferred_config_matches_the_source():
    model = tiny_model()
    config = infer_groupvit_config(to_official(model.state_dict()), **HEADS)
    ref = model.config
    for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "image_size", "patch_size"):
        assert getattr(config.vision_config, field) == getattr(ref.vision_config, field), field
    assert list(config.vision_config.depths) == list(ref.vision_config.depths) == [2, 1, 1]
    assert list(config.vision_config.num_group_tokens) == list(ref.vision_config.num_group_tokens) == [8, 4, 0]
    # The last stage has no grouping block: its entry repeats the previous count (transformers' convention).
    assert list(config.vision_config.num_output_groups) == [8, 4, 4]
    assert list(config.vision_config.assign_mlp_ratio) == [0.5, 4.0]
    for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size", "max_position_embeddings"):
        assert getattr(config.text_config, field) == getattr(ref.text_config, field), field
    assert (config.projection_dim, config.projection_intermediate_dim) == (32, 64)
    assert config.share_temperature is False


def test_default_size_mapping_on_meta_device():
    # The released GCC-YFCC shapes (spec 1.1), without allocating memory: heads default to width // 64 (6 and 4).
    with torch.device("meta"):
        reference = ZooGroupViTModel(ZooGroupViTConfig())
    official = to_official(reference.state_dict())
    assert official["img_encoder.layers.0.blocks.0.attn.qkv.weight"].shape == (3 * 384, 384)
    assert official["img_projector.linear_hidden.0.weight"].shape == (4096, 384, 1)
    config = infer_groupvit_config(official)
    vision, text = config.vision_config, config.text_config
    assert (vision.hidden_size, vision.num_attention_heads, vision.image_size, vision.patch_size) == (384, 6, 224, 16)
    assert list(vision.depths) == [6, 3, 3] and list(vision.num_group_tokens) == [64, 8, 0]
    assert list(vision.num_output_groups) == [64, 8, 8]
    assert (text.hidden_size, text.num_attention_heads, text.num_hidden_layers, text.max_position_embeddings) == (
        256,
        4,
        12,
        77,
    )
    assert (config.projection_dim, config.projection_intermediate_dim) == (256, 4096)
    converted = convert_groupvit_state_dict(official, config, dtype=None, model=reference)
    assert set(converted) == set(reference.state_dict())


def test_split_matches_official_fused_attention_and_projector():
    model = tiny_model()
    official = to_official(model.state_dict())
    converted = ZooGroupViTModel(infer_groupvit_config(official, **HEADS)).eval()
    converted.load_state_dict(convert_groupvit_state_dict(official, converted.config), strict=True)
    torch.manual_seed(2)
    x = torch.randn(2, 5, 32)

    # Vision: official `Attention(qkv_fuse=True)` written out as a loop over heads and positions.
    weight = official["img_encoder.layers.0.blocks.1.attn.qkv.weight"]
    bias = official["img_encoder.layers.0.blocks.1.attn.qkv.bias"]
    proj_w, proj_b = (
        official["img_encoder.layers.0.blocks.1.attn.proj.weight"],
        official["img_encoder.layers.0.blocks.1.attn.proj.bias"],
    )
    heads, width = 2, 32
    qkv = (x @ weight.t() + bias).reshape(2, 5, 3, heads, width // heads)
    expected = torch.zeros(2, 5, width)
    for b in range(2):
        for h in range(heads):
            q, k, v = qkv[b, :, 0, h], qkv[b, :, 1, h], qkv[b, :, 2, h]
            for n in range(5):
                scores = torch.stack([(q[n] * k[s]).sum() for s in range(5)]) * (width // heads) ** -0.5
                expected[b, n, h * 16 : (h + 1) * 16] = (scores.softmax(0)[:, None] * v).sum(0)
    expected = expected @ proj_w.t() + proj_b
    got = converted.vision_model.encoder.stages[0].layers[1].self_attn(x)[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    # Text: the official block is torch's nn.MultiheadAttention with a causal -inf mask.
    mha = nn.MultiheadAttention(32, 2)
    mha.load_state_dict(
        {
            "in_proj_weight": official["text_encoder.transformer.resblocks.1.attn.in_proj_weight"],
            "in_proj_bias": official["text_encoder.transformer.resblocks.1.attn.in_proj_bias"],
            "out_proj.weight": official["text_encoder.transformer.resblocks.1.attn.out_proj.weight"],
            "out_proj.bias": official["text_encoder.transformer.resblocks.1.attn.out_proj.bias"],
        }
    )
    causal = torch.full((5, 5), float("-inf")).triu(1)
    expected = mha(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), attn_mask=causal, need_weights=False)[0]
    got = converted.text_model.encoder.layers[1].self_attn(x, attention_mask=causal[None, None].expand(2, 1, 5, 5))[0]
    torch.testing.assert_close(got, expected.transpose(0, 1), rtol=1e-5, atol=1e-5)

    # Projector: official ProjectMLP = Conv1d(k=1) - BatchNorm1d - ReLU - Conv1d(k=1) over [B, C, L].
    feats = torch.randn(3, 32)
    hidden = F.conv1d(feats[:, :, None], official["img_projector.linear_hidden.0.weight"],
                      official["img_projector.linear_hidden.0.bias"])  # fmt: skip
    bn = {k: official[f"img_projector.linear_hidden.1.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
    hidden = F.batch_norm(hidden, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"], training=False)
    expected = F.conv1d(hidden.relu(), official["img_projector.linear_out.weight"],
                        official["img_projector.linear_out.bias"])[:, :, 0]  # fmt: skip
    torch.testing.assert_close(converted.visual_projection(feats), expected, rtol=1e-5, atol=1e-5)


CALLS = []


def _side_effect(tag):  # pragma: no cover - must never run during loading
    CALLS.append(tag)
    return tag


class PickledConfig:
    """Stands for the OmegaConf object the official training checkpoints pickle next to the weights."""

    def __reduce__(self):
        return (_side_effect, ("unpickling ran code",))


def test_training_checkpoint_with_pickled_objects_loads_without_running_them(tmp_path):
    model = tiny_model()
    checkpoint = official_checkpoint(model)
    checkpoint["config"] = PickledConfig()
    path = tmp_path / "ckpt_epoch_29.pth"
    torch.save(checkpoint, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what a plain safe load says about such a file
    loaded = load_groupvit_checkpoint(path, **HEADS)
    assert CALLS == []
    assert_same_outputs(model, loaded)


def test_state_dict_entry_that_is_not_a_tensor_is_refused(tmp_path):
    checkpoint = official_checkpoint(tiny_model())
    checkpoint["model"]["img_encoder.extra_state"] = PickledConfig()
    path = tmp_path / "bad.pth"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="not tensors.*img_encoder.extra_state"):
        load_official_state_dict(path)
    assert CALLS == []


def test_redcaps_checkpoint_without_multi_label_temperature():
    model = tiny_model()
    official = to_official(model.state_dict())
    del official["multi_label_logit_scale"]
    config = infer_groupvit_config(official, **HEADS)
    assert config.share_temperature is True and config.num_prompts == 0
    fresh = ZooGroupViTModel(config).eval()
    result = fresh.load_state_dict(convert_groupvit_state_dict(official, config), strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_same_outputs(model, fresh)


def test_bad_keys_are_named():
    official = to_official(tiny_model().state_dict())
    config = infer_groupvit_config(official, **HEADS)
    extra = dict(official)
    extra["img_encoder.layers.0.blocks.0.attn.bogus.weight"] = torch.zeros(1)
    extra["text_encoder.something_else"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"2 keys .*attn\.bogus\.weight.*text_encoder\.something_else"):
        convert_groupvit_state_dict(extra, config)
    missing = dict(official)
    del missing["img_encoder.layers.1.downsample.assign.proj.bias"]
    with pytest.raises(
        ValueError, match=r"missing \['vision_model\.encoder\.stages\.1\.downsample\.assign\.proj\.bias'\]"
    ):
        convert_groupvit_state_dict(missing, config)
    wrong = dict(official)
    wrong["img_encoder.layers.0.blocks.0.attn.qkv.weight"] = torch.zeros(64, 32)
    with pytest.raises(ValueError, match=r"attn\.qkv\.weight.*3 × 32"):
        convert_groupvit_state_dict(wrong, config)
    shape = dict(official)
    shape["img_encoder.norm.weight"] = torch.zeros(31)
    with pytest.raises(ValueError, match=r"vision_model\.layernorm\.weight: \(31,\) vs \(32,\)"):
        convert_groupvit_state_dict(shape, config)
    with pytest.raises(ValueError, match="text_num_attention_heads"):
        infer_groupvit_config(official)  # 32-wide towers: 32 // 64 = 0 heads
    with pytest.raises(ValueError, match="not an official GroupViT"):
        extract_state_dict({"model": tiny_model().state_dict()})  # already in the zoo layout


def test_cli_writes_safetensors_and_reads_safetensors_input(tmp_path):
    from safetensors.torch import save_file

    model = tiny_model()
    source = tmp_path / "official.safetensors"
    save_file({k: v.contiguous() for k, v in to_official(model.state_dict()).items()}, source)
    out = tmp_path / "converted"
    main(["--checkpoint", str(source), "--output_dir", str(out), "--vision_num_heads", "2",
          "--text_num_heads", "2"])  # fmt: skip
    assert (out / "model.safetensors").is_file()
    assert not any(name.endswith((".bin", ".pth", ".pt")) for name in os.listdir(out))
    assert (out / "tokenizer_config.json").is_file() or (out / "processor_config.json").is_file()
    reloaded = ZooGroupViTModel.from_pretrained(out).eval()
    assert_same_outputs(model, reloaded)


def _run_as_module(argv, monkeypatch):
    """`python -m hf_clipzoo.models.groupvit.convert_groupvit ARGV`, in this interpreter (runpy runs the module as
    `__main__`, as `-m` does, without paying a second torch import)."""
    import runpy
    import warnings

    monkeypatch.setattr(sys, "argv", ["convert_groupvit", *argv])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "found in sys.modules": the module is imported already
        runpy.run_module("hf_clipzoo.models.groupvit.convert_groupvit", run_name="__main__", alter_sys=True)


def test_cli_entry_point_runs_as_module(tmp_path, monkeypatch, capsys):
    source = tmp_path / "official.pth"
    torch.save(official_checkpoint(tiny_model()), source)
    _run_as_module(["--checkpoint", str(source), "--output_dir", str(tmp_path / "out"), "--vision_num_heads", "2",
                    "--text_num_heads", "2", "--no_processor"], monkeypatch)  # fmt: skip
    assert "Converted" in capsys.readouterr().out
    assert (tmp_path / "out" / "config.json").is_file()
    with pytest.raises(SystemExit) as exit_info:
        _run_as_module(["--checkpoint", str(tmp_path / "no.pth"), "--output_dir", str(tmp_path / "x")], monkeypatch)
    assert exit_info.value.code == 2 and "no file at" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [torch.float64, None])
def test_float64_checkpoint_loads_bit_identical(tmp_path, dtype):
    """The weights are the checkpoint's values, not the checkpoint rounded through a float32 model."""
    model = tiny_model().to(torch.float64)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(1e-9 * torch.randn_like(tensor))  # digits that float32 cannot hold
    path = tmp_path / "group_vit_tiny_fp64.pth"
    torch.save(official_checkpoint(model), path)
    official = load_official_state_dict(path)
    loaded = load_groupvit_checkpoint(path, dtype=dtype, **HEADS)
    expected = convert_groupvit_state_dict(official, loaded.config, dtype=None)
    got = loaded.state_dict()
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        assert torch.equal(got[name], value), name
    assert any(not torch.equal(v, v.float().double()) for v in expected.values() if v.is_floating_point())
