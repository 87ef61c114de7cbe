"""What the commands offer (the bench presets, the evaluation tasks), in a module that imports nothing heavy.

`hf-clipzoo --help` lists these choices, and must answer without importing torch or transformers; the bench and the
evaluator import them from here too, so the choices the parser offers are the ones that run.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKS: tuple[str, ...] = ("zero-shot", "retrieval", "mmvp")


@dataclass(frozen=True)
class BenchPreset:
    """The budget of one bench run (shared by every method, so comparisons are at equal cost).

    The image-text methods fine-tune the shipped CLIP foundation (`foundations/clip`) for `method_steps` steps at
    `learning_rate`; GroupViT fine-tunes its foundation with and without the multi-label loss for `groupvit_steps`;
    DIVA post-trains for `diva_steps` through the shipped diffusion model; the few-shot video methods train for
    `episodic_steps` episodic steps. SigLIP (not shipped) trains from scratch for `siglip_steps` when asked for.
    The few-shot classification runs (APE, Tip-Adapter, zero-shot) are scored on `few_shot_test_per_class` test
    images per class of the 64 (their differences are a few points, so the test set sets the interval's width), and
    search their hyper-parameters (and the trained adapters their epoch) on `few_shot_val_per_class` val images per
    class. At the largest shot count they run `few_shot_seeds` times (seeds `seed`, `seed + 1`, ...: each its own
    world draw, few-shot set and training), as the papers average 3 few-shot draws; the claims pool the seeds.
    DreamLIP's grounding (pointing game) is scored on the objects of `grounding_scenes` test scenes.
    """

    train_size: int
    eval_size: int
    classes_per_split: int
    batch_size: int
    learning_rate: float
    method_steps: int
    groupvit_steps: int
    diva_steps: int
    episodic_steps: int
    shots: tuple[int, ...]
    test_episodes: int
    mmvp_pairs: int
    segmentation_images: int
    siglip_steps: int
    model_preset: str
    few_shot_test_per_class: int
    few_shot_val_per_class: int
    few_shot_seeds: int
    grounding_scenes: int


PRESETS = {
    # Exercised by the test suite: proves the pipeline end to end (from the shipped foundations), not the numbers.
    "smoke": BenchPreset(
        train_size=128, eval_size=64, classes_per_split=2, batch_size=32, learning_rate=1e-4, method_steps=4,
        groupvit_steps=4, diva_steps=4, episodic_steps=2, shots=(1, 2), test_episodes=10, mmvp_pairs=20,
        segmentation_images=4, siglip_steps=6, model_preset="world-micro", few_shot_test_per_class=2,
        few_shot_val_per_class=2, few_shot_seeds=2, grounding_scenes=64,
    ),
    # The README default: every claim measured in about 20 minutes on 2 CPU cores.
    "quick": BenchPreset(
        train_size=4096, eval_size=512, classes_per_split=10, batch_size=64, learning_rate=2e-4, method_steps=120,
        groupvit_steps=80, diva_steps=80, episodic_steps=24, shots=(1, 4, 16), test_episodes=300, mmvp_pairs=300,
        segmentation_images=64, siglip_steps=300, model_preset="world-tiny", few_shot_test_per_class=64,
        few_shot_val_per_class=16, few_shot_seeds=3, grounding_scenes=2048,
    ),
    # A GPU budget: longer schedules, more test items.
    "full": BenchPreset(
        train_size=100_000, eval_size=2000, classes_per_split=50, batch_size=256, learning_rate=2e-4,
        method_steps=5000, groupvit_steps=5000, diva_steps=2000, episodic_steps=2000, shots=(1, 2, 4, 8, 16),
        test_episodes=10_000, mmvp_pairs=1000, segmentation_images=500, siglip_steps=20_000,
        model_preset="world-small", few_shot_test_per_class=100,
        few_shot_val_per_class=16, few_shot_seeds=3, grounding_scenes=4000,
    ),
}  # fmt: skip


__all__ = ["PRESETS", "TASKS", "BenchPreset"]
