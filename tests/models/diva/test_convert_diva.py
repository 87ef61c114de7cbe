"""Conversion of the released DIVA `.pth` (OpenAI ViT layout inside the official `SDModel` state dict) into a
transformers `CLIPVisionModel`, on a tiny state dict with the real key names."""

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from hf_clipzoo.backbones.convert import load_state_dict_file
from hf_clipzoo.models.diva.convert_diva import convert_diva_checkpoint, main


def openai_layout(model: CLIPVisionModel, projection: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """The OpenAI `clip` library's key names for a tower, written out by hand (inverse of the conversion)."""
    s = model.state_dict()
    out = {
        f"{prefix}visual.conv1.weight": s["embeddings.patch_embedding.weight"],
        f"{prefix}visual.class_embedding": s["embeddings.class_embedding"],
        f"{prefix}visual.positional_embedding": s["embeddings.position_embedding.weight"],
        f"{prefix}visual.ln_pre.weight": s["pre_layrnorm.weight"],
        f"{prefix}visual.ln_pre.bias": s["pre_layrnorm.bias"],
        f"{prefix}visual.ln_post.weight": s["post_layernorm.weight"],
        f"{prefix}visual.ln_post.bias": s["post_layernorm.bias"],
        f"{prefix}visual.proj": projection.t(),  # OpenAI: x @ proj
    }
    for i in range(model.config.num_hidden_layers):
        src, dst = f"{prefix}visual.transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for suffix in ("weight", "bias"):
            out[f"{src}attn.in_proj_{suffix}"] = torch.cat(
                [s[f"{dst}self_attn.{n}_proj.{suffix}"] for n in ("q", "k", "v")], dim=0
            )
            out[f"{src}attn.out_proj.{suffix}"] = s[f"{dst}self_attn.out_proj.{suffix}"]
            out[f"{src}ln_1.{suffix}"] = s[f"{dst}layer_norm1.{suffix}"]
            out[f"{src}mlp.c_fc.{suffix}"] = s[f"{dst}mlp.fc1.{suffix}"]
            out[f"{src}mlp.c_proj.{suffix}"] = s[f"{dst}mlp.fc2.{suffix}"]
            out[f"{src}ln_2.{suffix}"] = s[f"{dst}layer_norm2.{suffix}"]
    return out


@pytest.mark.parametrize("prefix", ["class_model.model.", "module.", ""])
def test_diva_checkpoint_converts_to_an_identical_clip_vision_model(tmp_path, prefix):
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=1, image_size=16,
        patch_size=4, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )  # fmt: skip
    reference = CLIPVisionModel(config).eval()
    projection = torch.randn(24, 64)
    state = openai_layout(reference, projection, prefix)
    # What else the official SDModel state dict holds: the text tower, SD's UNet, DIVA's visual_proj, final_fc.
    state[f"{prefix}token_embedding.weight"] = torch.randn(10, 8)
    state["unet.conv_in.weight"] = torch.randn(4, 4, 3, 3)
    state["visual_proj.weight"], state["visual_proj.bias"] = torch.randn(32, 24), torch.randn(32)
    torch.save(state, tmp_path / "OpenAI-ViT-L-14-224.pth")

    model, converted_projection, diva_proj = convert_diva_checkpoint(
        load_state_dict_file(tmp_path / "OpenAI-ViT-L-14-224.pth")
    )
    assert model.config.image_size == 16 and model.config.patch_size == 4 and model.config.num_hidden_layers == 2
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=0, rtol=0, msg=key)
    torch.testing.assert_close(converted_projection, projection, atol=0, rtol=0)
    pixel_values = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).pooler_output, reference(pixel_values).pooler_output)
    if prefix == "class_model.model.":
        assert set(diva_proj) == {"weight", "bias"}

    main(["--checkpoint", str(tmp_path / "OpenAI-ViT-L-14-224.pth"), "--output_dir", str(tmp_path / "out")])
    reloaded = CLIPVisionModel.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values).pooler_output, reference(pixel_values).pooler_output)


def test_unsupported_layouts_raise():
    with pytest.raises(ValueError, match="exactly one OpenAI-CLIP vision tower"):
        convert_diva_checkpoint({"visual.trunk.patch_embed.proj.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="state dict"):
        convert_diva_checkpoint([1, 2])
