"""The cost of a DIVA step, split into its parts, against a baseline CLIP training step.

    python benchmarks/bench_diva.py [--device cuda] [--clip-preset world-tiny] [--diffusion-preset tiny] \\
        [--resolution 64] [--batch 16] [--draws 2] [--diffusion_model_name_or_path stable-diffusion-2-1-base]

A DIVA step (spec §4.3) is: CLIP vision forward (the condition) → frozen VAE encode (no graph) → K × frozen UNet
forward → backward through the UNet's activations (no weight gradients) → backward through the CLIP tower. The table
times each part alone, with its peak memory, on the same batch:

- `clip fwd`: the condition (tower + projections), with a graph;
- `clip bwd`: backward from the condition into the tower;
- `diffusion fwd`: VAE encode + K UNet forwards + loss, from a detached condition leaf;
- `diffusion bwd`: backward from the loss to that leaf (through the frozen UNet);
- `DIVA step`: all of it, compared with the reference, a CLIP InfoNCE forward + backward of the same image batch
  (`ZooCLIPModel`, both towers): the ratio is what diffusion feedback costs over ordinary CLIP training.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import compare, describe_machine, markdown_table, parse_args, peak_memory_mib  # noqa: E402

from hf_clipzoo import ZooCLIPConfig, ZooCLIPModel  # noqa: E402
from hf_clipzoo.models.diva import DivaConfig, DivaModel  # noqa: E402
from hf_clipzoo.models.diva.diffusion import DIFFUSION_PRESETS, build_diffusion, load_diffusion_folder  # noqa: E402
from hf_clipzoo.models.diva.modeling_diva import encode_latents  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_parts(parts: dict, device: str, repeats: int, warmup: int) -> dict[str, float]:
    """Median ms of each part's timed call. A part is `(prepare, timed)`: `prepare()` runs untimed and its result is
    passed to `timed` (e.g. a forward whose backward is timed). Parts are interleaved, round after round, so machine
    load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in parts}
    for round_index in range(warmup + repeats):
        for name, (prepare, timed) in parts.items():
            state = prepare()
            _sync(device)
            start = time.perf_counter()
            timed(state)
            _sync(device)
            if round_index >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip-preset", default="world-tiny", help="CLIP tower shapes (CLIP_PRESETS).")
    parser.add_argument("--diffusion-preset", default="tiny", choices=sorted(DIFFUSION_PRESETS), help="VAE / UNet.")
    parser.add_argument("--diffusion_model_name_or_path", default=None, help="A real diffusion folder instead.")
    parser.add_argument("--resolution", type=int, default=64, help="Image side the VAE sees (default: 64).")
    parser.add_argument("--batch", type=int, default=16, help="Images per step (default: 16).")
    parser.add_argument("--draws", type=int, default=2, help="(t, eps) draws per step (default: 2, official).")
    parser.add_argument("--prompt-length", type=int, default=77, help="Tokens of the condition (default: 77).")
    args = parse_args(__doc__, parser)
    device = args.device

    torch.manual_seed(0)
    clip_config = ZooCLIPConfig.from_preset(args.clip_preset)
    if args.diffusion_model_name_or_path:
        vae, unet, scheduler, _ = load_diffusion_folder(args.diffusion_model_name_or_path)
    else:
        # As in the world pre-training: the UNet is conditioned on the zoo CLIP's text hidden states.
        cross = clip_config.text_config.hidden_size
        vae, unet, scheduler = build_diffusion(args.diffusion_preset, cross, args.resolution)
    cross = unet.config.cross_attention_dim
    config = DivaConfig(
        vision_config=clip_config.vision_config.to_dict(),
        projection_dim=clip_config.projection_dim,
        cross_attention_dim=cross,
        num_sampled_tokens=args.prompt_length - 1,
        prompt_length=args.prompt_length,
        num_noise_draws=args.draws,
    )
    model = DivaModel(config).to(device).train()
    vae.to(device)
    unet.to(device)
    model.attach_diffusion(vae, unet, scheduler)
    images = torch.rand(args.batch, 3, args.resolution, args.resolution, device=device)
    clip_pv, vae_pv = model.prepare_pixel_values(images)

    def clip_forward():
        return model(pixel_values=clip_pv).condition

    condition = clip_forward()
    grad = torch.randn_like(condition)

    def clip_backward():
        model.zero_grad(set_to_none=True)
        clip_forward().backward(grad)

    leaf = condition.detach().requires_grad_(True)

    def diffusion_forward():
        latents = encode_latents(vae, vae_pv)
        losses = []
        for _ in range(args.draws):
            t = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), device=device)
            noise = torch.randn_like(latents)
            prediction = unet(scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=leaf).sample
            losses.append(torch.nn.functional.mse_loss(prediction.float(), noise.float()))
        return torch.stack(losses).mean()

    def diffusion_backward():
        leaf.grad = None
        diffusion_forward().backward()

    def diva_step():
        model.zero_grad(set_to_none=True)
        model(pixel_values=clip_pv, vae_pixel_values=vae_pv, return_loss=True).loss.backward()

    reference = ZooCLIPModel(clip_config).to(device).train()
    input_ids = torch.randint(0, 49405, (args.batch, 32), device=device)
    input_ids[:, -1] = clip_config.text_config.eos_token_id

    def clip_step():
        reference.zero_grad(set_to_none=True)
        reference(input_ids=input_ids, pixel_values=clip_pv, return_loss=True).loss.backward()

    def no_prepare():
        return None

    def clip_prepare():
        model.zero_grad(set_to_none=True)
        return clip_forward()

    def diffusion_prepare():
        leaf.grad = None
        return diffusion_forward()

    medians = time_parts(
        {
            "clip fwd": (no_prepare, lambda _: clip_forward()),
            "clip bwd": (clip_prepare, lambda out: out.backward(grad)),
            "diffusion fwd": (no_prepare, lambda _: diffusion_forward()),
            "diffusion bwd": (diffusion_prepare, lambda loss: loss.backward()),
        },
        device,
        args.repeats,
        args.warmup,
    )
    peaks = {
        "clip fwd": peak_memory_mib(clip_forward, device),
        "clip bwd": peak_memory_mib(clip_backward, device),
        "diffusion fwd": peak_memory_mib(diffusion_forward, device),
        "diffusion bwd": peak_memory_mib(diffusion_backward, device),
    }
    rows = [(name, medians[name], peaks[name]) for name in medians]
    source = args.diffusion_model_name_or_path or f"{args.diffusion_preset} preset"
    print(describe_machine(device))
    print(
        f"\nDIVA parts: CLIP {args.clip_preset}, diffusion {source} at {args.resolution} px, batch {args.batch}, "
        f"{args.draws} draws, {config.num_condition_tokens} condition tokens of width {cross}\n"
    )
    print("| part | median ms | peak MiB (fwd, or fwd+bwd for bwd rows) |\n|---|---:|---:|")
    for name, ms, peak in rows:
        print(f"| {name} | {ms:.1f} | {'n/a' if peak is None else f'{peak:.1f}'} |")
    result = compare(
        f"DIVA step vs CLIP step, batch {args.batch}",
        diva_step,
        clip_step,
        device=device,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    print()
    print(markdown_table([result], title="candidate: full DIVA step, reference: CLIP InfoNCE step (same images)"))


if __name__ == "__main__":
    main()
