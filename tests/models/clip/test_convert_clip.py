"""OpenAI / open_clip → transformers CLIP conversion, checked against a naive OpenAI CLIP forward on the raw weights."""

import argparse
import math
import zipfile

import pytest
import torch

from hf_clipzoo.models.clip import ZooCLIPModel
from hf_clipzoo.models.clip.convert_clip import (
    convert_openai_clip_state_dict,
    infer_clip_config,
    load_openai_clip_checkpoint,
    main,
)

# Tiny but uneven sizes, so that a swapped dimension cannot go unnoticed.
VISION_WIDTH, TEXT_WIDTH, EMBED_DIM = 64, 32, 24
LAYERS, IMAGE_SIZE, PATCH, CONTEXT, VOCAB = 2, 32, 8, 16, 100


def random_openai_state_dict(
    vision_width: int = VISION_WIDTH,
    text_width: int = TEXT_WIDTH,
    vocab: int = VOCAB,
    mlp_ratio: int = 4,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A random state dict with the key names and shapes of OpenAI's `clip/model.py` `CLIP` (ViT)."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.1):
        return torch.randn(*shape, generator=generator) * scale

    def blocks(prefix, width):
        out = {}
        for i in range(LAYERS):
            p = f"{prefix}transformer.resblocks.{i}."
            out |= {
                p + "attn.in_proj_weight": rand(3 * width, width, scale=width**-0.5),
                p + "attn.in_proj_bias": rand(3 * width),
                p + "attn.out_proj.weight": rand(width, width, scale=width**-0.5),
                p + "attn.out_proj.bias": rand(width),
                p + "ln_1.weight": 1 + rand(width),
                p + "ln_1.bias": rand(width),
                p + "mlp.c_fc.weight": rand(mlp_ratio * width, width, scale=width**-0.5),
                p + "mlp.c_fc.bias": rand(mlp_ratio * width),
                p + "mlp.c_proj.weight": rand(width, mlp_ratio * width, scale=(mlp_ratio * width) ** -0.5),
                p + "mlp.c_proj.bias": rand(width),
                p + "ln_2.weight": 1 + rand(width),
                p + "ln_2.bias": rand(width),
            }
        return out

    grid = IMAGE_SIZE // PATCH
    state_dict = {
        "visual.conv1.weight": rand(vision_width, 3, PATCH, PATCH, scale=0.2),
        "visual.class_embedding": rand(vision_width, scale=0.5),
        "visual.positional_embedding": rand(grid * grid + 1, vision_width, scale=0.5),
        "visual.ln_pre.weight": 1 + rand(vision_width),
        "visual.ln_pre.bias": rand(vision_width),
        **blocks("visual.", vision_width),
        "visual.ln_post.weight": 1 + rand(vision_width),
        "visual.ln_post.bias": rand(vision_width),
        "visual.proj": rand(vision_width, EMBED_DIM, scale=vision_width**-0.5),
        "token_embedding.weight": rand(vocab, text_width, scale=0.5),
        "positional_embedding": rand(CONTEXT, text_width, scale=0.5),
        **blocks("", text_width),
        "ln_final.weight": 1 + rand(text_width),
        "ln_final.bias": rand(text_width),
        "text_projection": rand(text_width, EMBED_DIM, scale=text_width**-0.5),
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
    }
    return state_dict


# ----------------------------------------------------------------------------------------------------------------------
# Naive OpenAI CLIP, written from the paper / clip/model.py with plain tensor ops on the raw state dict.


def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def activation(x, kind):
    if kind == "quick_gelu":
        return x * torch.sigmoid(1.702 * x)
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))  # exact GELU, as nn.GELU


def attention(x, sd, p, heads, causal):
    batch, length, width = x.shape
    qkv = x @ sd[p + "attn.in_proj_weight"].T + sd[p + "attn.in_proj_bias"]
    q, k, v = (t.reshape(batch, length, heads, width // heads).transpose(1, 2) for t in qkv.split(width, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if causal:
        scores = scores + torch.full((length, length), float("-inf")).triu(1)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, width)
    return out @ sd[p + "attn.out_proj.weight"].T + sd[p + "attn.out_proj.bias"]


def transformer(x, sd, prefix, heads, causal, act):
    for i in range(LAYERS):
        p = f"{prefix}transformer.resblocks.{i}."
        x = x + attention(layer_norm(x, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"]), sd, p, heads, causal)
        h = layer_norm(x, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        h = activation(h @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"], act)
        x = x + h @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
    return x


def naive_encode_image(sd, pixels, heads, act="quick_gelu"):
    batch, channels, size, _ = pixels.shape
    grid = size // PATCH
    # conv1 with stride = kernel = patch is a matmul over flattened (channel, row, column) patches.
    patches = pixels.reshape(batch, channels, grid, PATCH, grid, PATCH).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(batch, grid * grid, channels * PATCH * PATCH)
    x = patches @ sd["visual.conv1.weight"].reshape(sd["visual.conv1.weight"].shape[0], -1).T
    cls = sd["visual.class_embedding"].expand(batch, 1, -1)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    x = layer_norm(x, sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"])
    x = transformer(x, sd, "visual.", heads, causal=False, act=act)
    x = layer_norm(x[:, 0], sd["visual.ln_post.weight"], sd["visual.ln_post.bias"])
    return x @ sd["visual.proj"]


def naive_encode_text(sd, tokens, heads, act="quick_gelu"):
    x = sd["token_embedding.weight"][tokens] + sd["positional_embedding"][: tokens.shape[1]]
    x = transformer(x, sd, "", heads, causal=True, act=act)
    x = layer_norm(x, sd["ln_final.weight"], sd["ln_final.bias"])
    eot = tokens.argmax(dim=-1)
    return x[torch.arange(tokens.shape[0]), eot] @ sd["text_projection"]


def naive_logits_per_image(sd, pixels, tokens, vision_heads, text_heads, act="quick_gelu"):
    image = naive_encode_image(sd, pixels, vision_heads, act)
    text = naive_encode_text(sd, tokens, text_heads, act)
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    logits = sd["logit_scale"].exp() * image @ text.T
    return logits + sd["logit_bias"] if "logit_bias" in sd else logits


def make_inputs(pad_id: int = 0, seed: int = 1):
    """OpenAI-style token rows: <sot> words <eot> then padding (0 in OpenAI's `clip.tokenize`, <eot> in HF's)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    lengths = [3, 9, CONTEXT - 2]
    tokens = torch.full((len(lengths), CONTEXT), pad_id, dtype=torch.long)
    for row, length in enumerate(lengths):
        tokens[row, 0] = VOCAB - 2
        tokens[row, 1 : length + 1] = torch.randint(1, VOCAB - 2, (length,), generator=generator)
        tokens[row, length + 1] = VOCAB - 1
    return pixels, tokens


def converted_model(sd, **config_kwargs):
    config = infer_clip_config(sd, **config_kwargs)
    model = ZooCLIPModel(config).eval()
    missing, unexpected = model.load_state_dict(convert_openai_clip_state_dict(sd, config), strict=False)
    assert missing == [] and unexpected == []
    return model


# ----------------------------------------------------------------------------------------------------------------------


def test_infer_config_reads_shapes():
    config = infer_clip_config(random_openai_state_dict())
    vision, text = config.vision_config, config.text_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.intermediate_size) == (64, 2, 256)
    assert (vision.image_size, vision.patch_size, vision.num_channels, vision.num_attention_heads) == (32, 8, 3, 1)
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (32, 2, 128)
    assert (text.max_position_embeddings, text.vocab_size, text.eos_token_id, text.bos_token_id) == (16, 100, 99, 98)
    assert text.num_attention_heads == 1  # max(32 // 64, 1)
    assert config.projection_dim == 24 and config.loss_type == "softmax"
    assert vision.hidden_act == text.hidden_act == "quick_gelu"
    gelu = infer_clip_config(random_openai_state_dict(vision_width=128), hidden_act="gelu", text_num_heads=4)
    assert gelu.vision_config.num_attention_heads == 2 and gelu.text_config.num_attention_heads == 4
    assert gelu.text_config.hidden_act == "gelu"
    with pytest.raises(ValueError, match="hidden_act"):
        infer_clip_config(random_openai_state_dict(), hidden_act="relu")


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_matches_naive_openai_forward(act):
    sd = random_openai_state_dict()
    model = converted_model(sd, hidden_act=act, vision_num_heads=4, text_num_heads=2)
    pixels, tokens = make_inputs()
    with torch.no_grad():
        image = model.get_image_features(pixels).pooler_output
        text = model.get_text_features(tokens).pooler_output
        logits = model(input_ids=tokens, pixel_values=pixels).logits_per_image
    expected_image = naive_encode_image(sd, pixels, heads=4, act=act)
    expected_text = naive_encode_text(sd, tokens, heads=2, act=act)
    torch.testing.assert_close(image, expected_image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(text, expected_text, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, naive_logits_per_image(sd, pixels, tokens, 4, 2, act), atol=1e-5, rtol=1e-5)
    # The check has teeth: the other activation, or the wrong head count, gives different features.
    other = "gelu" if act == "quick_gelu" else "quick_gelu"
    assert not torch.allclose(image, naive_encode_image(sd, pixels, heads=4, act=other), atol=1e-4)
    assert not torch.allclose(image, naive_encode_image(sd, pixels, heads=1, act=act), atol=1e-4)


def test_hf_padding_with_eot_pools_the_first_eot():
    # transformers' tokenizer pads with <|endoftext|>: the first one must be pooled, as argmax does in OpenAI's code.
    sd = random_openai_state_dict()
    model = converted_model(sd)
    pixels, tokens = make_inputs(pad_id=VOCAB - 1)
    attention_mask = (torch.arange(CONTEXT) <= (tokens == VOCAB - 1).int().argmax(-1, keepdim=True)).long()
    with torch.no_grad():
        text = model.get_text_features(tokens, attention_mask=attention_mask).pooler_output
    torch.testing.assert_close(text, naive_encode_text(sd, tokens, heads=1), atol=1e-5, rtol=1e-5)


def test_sigmoid_checkpoint_keeps_logit_bias():
    sd = random_openai_state_dict() | {"logit_bias": torch.tensor(-7.5)}
    model = converted_model(sd)
    assert model.config.loss_type == "sigmoid" and model.logit_bias.item() == -7.5
    pixels, tokens = make_inputs()
    with torch.no_grad():
        logits = model(input_ids=tokens, pixel_values=pixels).logits_per_image
    torch.testing.assert_close(logits, naive_logits_per_image(sd, pixels, tokens, 1, 1), atol=1e-5, rtol=1e-5)


def test_open_clip_variants_load(tmp_path):
    """open_clip: {"state_dict"} wrapper, DDP `module.` prefix, `attn_mask` buffer, Linear text projection, fp16."""
    sd = random_openai_state_dict()
    variant = {k: v.half() for k, v in sd.items() if k != "text_projection"}
    variant["text_projection.weight"] = sd["text_projection"].T.half()
    variant["attn_mask"] = torch.full((CONTEXT, CONTEXT), float("-inf")).triu(1)
    variant["input_resolution"] = torch.tensor(IMAGE_SIZE)  # as in OpenAI's TorchScript state dicts
    path = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "tiny", "state_dict": {"module." + k: v for k, v in variant.items()}}, path)
    model = load_openai_clip_checkpoint(path, hidden_act="gelu")
    assert model.dtype == torch.float32 and not model.training
    reference = {k: v.half().float() for k, v in sd.items()}
    pixels, tokens = make_inputs()
    with torch.no_grad():
        logits = model(input_ids=tokens, pixel_values=pixels).logits_per_image
    expected = naive_logits_per_image(reference, pixels, tokens, 1, 1, act="gelu")
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    sd = random_openai_state_dict()
    save_file(sd, tmp_path / "clip.safetensors")
    model = load_openai_clip_checkpoint(tmp_path / "clip.safetensors")
    pixels, _ = make_inputs()
    with torch.no_grad():
        image = model.get_image_features(pixels).pooler_output
    torch.testing.assert_close(image, naive_encode_image(sd, pixels, heads=1), atol=1e-5, rtol=1e-5)


def test_cli_writes_loadable_model_and_processor(tmp_path):
    from transformers import AutoModel, AutoProcessor

    sd = random_openai_state_dict(vocab=49408)
    torch.save(sd, tmp_path / "clip.pt")
    main(["--checkpoint", str(tmp_path / "clip.pt"), "--output_dir", str(tmp_path / "out")])
    model = AutoModel.from_pretrained(tmp_path / "out").eval()
    processor = AutoProcessor.from_pretrained(tmp_path / "out")
    assert isinstance(model, ZooCLIPModel)
    inputs = processor(text=["a photo of a cat", "two red squares"], padding="max_length", return_tensors="pt")
    assert inputs["input_ids"].shape == (2, CONTEXT)
    assert processor.image_processor.crop_size == {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    with torch.no_grad():
        text = model.get_text_features(**inputs).pooler_output
    torch.testing.assert_close(text, naive_encode_text(sd, inputs["input_ids"], heads=1), atol=1e-5, rtol=1e-5)

    # A vocabulary other than OpenAI's: the model is written, the (mismatching) processor is not.
    torch.save(random_openai_state_dict(), tmp_path / "small.pt")
    main(["--checkpoint", str(tmp_path / "small.pt"), "--output_dir", str(tmp_path / "small"), "--open_clip"])
    assert (tmp_path / "small" / "model.safetensors").is_file()
    assert not (tmp_path / "small" / "processor_config.json").exists()
    assert AutoModel.from_pretrained(tmp_path / "small").config.text_config.hidden_act == "gelu"


# ----------------------------------------------------------------------------------------------------------------------
# Errors


def test_resnet_and_custom_towers_are_refused():
    sd = random_openai_state_dict()
    resnet = {k: v for k, v in sd.items() if not k.startswith("visual.")}
    resnet |= {"visual.conv1.weight": torch.zeros(32, 3, 3, 3), "visual.attnpool.c_proj.weight": torch.zeros(8, 8)}
    resnet["visual.layer1.0.conv1.weight"] = torch.zeros(8, 8, 1, 1)
    with pytest.raises(ValueError, match="ModifiedResNet"):
        infer_clip_config(resnet)
    with pytest.raises(ValueError, match="ModifiedResNet"):
        convert_openai_clip_state_dict(resnet, infer_clip_config(sd))
    with pytest.raises(ValueError, match="CustomTextCLIP"):
        infer_clip_config(sd | {"visual.trunk.patch_embed.proj.weight": torch.zeros(1)})


def test_missing_leftover_and_mismatched_keys_are_named():
    sd = random_openai_state_dict()
    config = infer_clip_config(sd)

    missing = {k: v for k, v in sd.items() if k != "visual.ln_post.bias"}
    with pytest.raises(ValueError, match=r"visual\.ln_post\.bias"):
        convert_openai_clip_state_dict(missing, config)

    layer_scale = sd | {"visual.transformer.resblocks.0.ls_1.gamma": torch.ones(VISION_WIDTH)}
    with pytest.raises(ValueError, match=r"visual\.transformer\.resblocks\.0\.ls_1\.gamma"):
        convert_openai_clip_state_dict(layer_scale, config)
    with pytest.raises(ValueError, match="logit_bias"):
        convert_openai_clip_state_dict(sd | {"logit_bias": torch.tensor(-10.0)}, config)

    wrong = dict(sd)
    wrong["transformer.resblocks.1.mlp.c_fc.weight"] = torch.zeros(100, TEXT_WIDTH)
    with pytest.raises(ValueError, match=r"text_model\.encoder\.layers\.1\.mlp\.fc1\.weight: checkpoint \(100, 32\)"):
        convert_openai_clip_state_dict(wrong, config)

    # A config of another size: every mismatching tensor is listed.
    small = infer_clip_config(random_openai_state_dict(vision_width=32))
    with pytest.raises(ValueError, match=r"vision_model\.pre_layrnorm\.weight: checkpoint \(64,\) vs model \(32,\)"):
        convert_openai_clip_state_dict(sd, small)

    with pytest.raises(ValueError, match="square number of patches"):
        infer_clip_config(sd | {"visual.positional_embedding": torch.zeros(20, VISION_WIDTH)})
    with pytest.raises(ValueError, match="not a tensor"):
        infer_clip_config(sd | {"visual.ln_pre.weight": [1.0, 2.0]})
    with pytest.raises(ValueError, match="not numbered 0..n-1"):
        gap = {k.replace("resblocks.1.", "resblocks.2."): v for k, v in sd.items()}
        infer_clip_config(gap)


def test_vit_b_16_shapes_give_openai_config():
    """Full-size shapes on the meta device (no memory): the config of `openai/clip-vit-base-patch16`."""
    meta = {}
    for prefix, width, layers in (("visual.", 768, 12), ("", 512, 12)):
        for i in range(layers):
            p = f"{prefix}transformer.resblocks.{i}."
            meta |= {p + "attn.in_proj_weight": (3 * width, width), p + "attn.in_proj_bias": (3 * width,)}
            meta |= {p + "attn.out_proj.weight": (width, width), p + "attn.out_proj.bias": (width,)}
            meta |= {p + "mlp.c_fc.weight": (4 * width, width), p + "mlp.c_fc.bias": (4 * width,)}
            meta |= {p + "mlp.c_proj.weight": (width, 4 * width), p + "mlp.c_proj.bias": (width,)}
            meta |= {p + f"{ln}.{s}": (width,) for ln in ("ln_1", "ln_2") for s in ("weight", "bias")}
    meta |= {f"visual.{ln}.{s}": (768,) for ln in ("ln_pre", "ln_post") for s in ("weight", "bias")}
    meta |= {f"ln_final.{s}": (512,) for s in ("weight", "bias")}
    meta |= {"visual.conv1.weight": (768, 3, 16, 16), "visual.class_embedding": (768,)}
    meta |= {"visual.positional_embedding": (197, 768), "visual.proj": (768, 512), "text_projection": (512, 512)}
    meta |= {"token_embedding.weight": (49408, 512), "positional_embedding": (77, 512), "logit_scale": ()}
    meta |= {"input_resolution": (), "context_length": (), "vocab_size": ()}  # OpenAI's TorchScript extras
    meta = {k: torch.empty(shape, device="meta") for k, shape in meta.items()}
    config = infer_clip_config(meta)
    vision, text = config.vision_config, config.text_config
    assert (vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers) == (768, 3072, 12)
    assert (vision.num_attention_heads, vision.image_size, vision.patch_size) == (12, 224, 16)
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.num_attention_heads) == (
        512,
        2048,
        12,
        8,
    )
    assert (text.max_position_embeddings, text.vocab_size, text.eos_token_id, config.projection_dim) == (
        77,
        49408,
        49407,
        512,
    )
    converted = convert_openai_clip_state_dict(meta, config, dtype=None)
    assert len(converted) == 12 * 16 * 2 + 14 and converted["visual_projection.weight"].shape == (512, 768)


def test_torchscript_archive_is_refused_before_loading(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated; it is used here only to write a real archive
        traced = torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2))
        torch.jit.save(traced, tmp_path / "traced.pt")
    with pytest.raises(ValueError, match="TorchScript archive"):
        load_openai_clip_checkpoint(tmp_path / "traced.pt")

    path = tmp_path / "ViT-B-16.pt"
    # The layout of a TorchScript zip (as torch.jit.save writes it); its code must never be run.
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ViT-B-16/code/__torch__/model.py", "raise SystemExit('executed')\n")
        archive.writestr("ViT-B-16/constants.pkl", b"")
        archive.writestr("ViT-B-16/data.pkl", b"")
    with pytest.raises(ValueError, match="TorchScript archive.*state_dict"):
        load_openai_clip_checkpoint(path)


def test_corrupt_and_unsafe_files(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02not really a checkpoint" * 10)
    with pytest.raises(ValueError, match="corrupt.pt is not a readable torch checkpoint"):
        load_openai_clip_checkpoint(corrupt)

    truncated = tmp_path / "truncated.pt"
    torch.save(random_openai_state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(ValueError, match="Could not read"):
        load_openai_clip_checkpoint(truncated)

    # Arbitrary pickled objects are refused by weights_only=True, and reported as such.
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": random_openai_state_dict(), "args": argparse.Namespace(lr=1.0)}, unsafe)
    with pytest.raises(ValueError, match="objects other than tensors.*Namespace"):
        load_openai_clip_checkpoint(unsafe)

    bad_safetensors = tmp_path / "bad.safetensors"
    bad_safetensors.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_openai_clip_checkpoint(bad_safetensors)
    with pytest.raises(FileNotFoundError):
        load_openai_clip_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="Expected a state dict"):
        infer_clip_config([1, 2, 3])
