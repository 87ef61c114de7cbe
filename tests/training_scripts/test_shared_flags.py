"""Every training script refuses a bad value of a shared numeric flag at parse time, naming the flag (no training)."""

import pytest

from hf_clipzoo.training.arguments import SHARED_FLAG_RULES
from tests.training_scripts.script_utils import load_training_script

# The arguments each script requires; the paths are never opened while parsing.
REQUIRED = {
    "ape": ["--model_name_or_path", "unused"],
    "clip": [],
    "clip_fsar": [],
    "diva": ["--model_name_or_path", "unused", "--diffusion_model_name_or_path", "unused"],
    "diva_pretrain_diffusion": [],
    "dreamlip": [],
    "fff": [],
    "groupvit": [],
    "ma_clip": ["--model_name_or_path", "unused"],
}

# Written out by hand rather than derived from the rules, so that a loosened rule fails here.
BAD_VALUES = {
    "per_device_train_batch_size": ["0", "-2"],
    "batch_size": ["0"],
    "gradient_accumulation_steps": ["0", "-1"],
    "learning_rate": ["0", "-1e-4", "nan", "inf"],
    "weight_decay": ["-0.1", "nan"],
    "adam_beta1": ["-0.1", "1.0"],
    "adam_beta2": ["1.0", "nan"],
    "adam_epsilon": ["0", "-1e-8"],
    "num_warmup_steps": ["-1"],
    "warmup_ratio": ["-0.1", "1.5"],
    "max_train_steps": ["0", "-5"],
    "num_train_epochs": ["0"],
    "max_grad_norm": ["-1", "nan"],
    "seed": ["-1", str(2**32)],
    "logging_steps": ["0"],
    "eval_steps": ["0"],
    "checkpointing_steps": ["0", "-1"],
    "checkpoints_total_limit": ["-1"],
    "stop_after_step": ["0"],
    "dataloader_num_workers": ["-1"],
    "max_train_samples": ["0"],
    "max_eval_samples": ["0"],
    "synthetic_train_size": ["0"],
    "synthetic_eval_size": ["-1"],
    "synthetic_classes_per_split": ["0"],
    "resolution": ["0"],
    "torch_compile_backend": ["tensorrt", ""],
}


def _flags(script: str) -> set[str]:
    return set(vars(load_training_script(script).parse_args(REQUIRED[script])))


CASES = [
    pytest.param(script, flag, value, id=f"{script}--{flag}={value}")
    for script in REQUIRED
    for flag in sorted(_flags(script) & set(BAD_VALUES))
    for value in BAD_VALUES[flag]
]


def test_every_shared_rule_has_bad_values():
    assert set(BAD_VALUES) == set(SHARED_FLAG_RULES)


@pytest.mark.parametrize("script", sorted(set(REQUIRED) - {"diva_pretrain_diffusion"}))
def test_every_accelerate_script_has_the_shared_flags(script):
    # The flags of `add_optimization_arguments` / `add_run_arguments`, so the parametrized cases cover all of them.
    assert {"max_grad_norm", "checkpoints_total_limit", "learning_rate", "seed", "checkpointing_steps"} <= _flags(
        script
    )


@pytest.mark.parametrize("script", sorted(REQUIRED))
def test_defaults_pass(script):
    load_training_script(script).parse_args(REQUIRED[script])


@pytest.mark.parametrize(("script", "flag", "value"), CASES)
def test_bad_value_is_refused_naming_the_flag(script, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_training_script(script).parse_args([*REQUIRED[script], f"--{flag}={value}"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"--{flag} must be" in error, error


@pytest.mark.parametrize(
    ("script", "argv", "flag"),
    [
        ("ape", ["--shots", "0"], "--shots"),
        ("ape", ["--augment_epochs", "-1"], "--augment_epochs"),
        ("clip_fsar", ["--way", "0"], "--way"),
        ("clip_fsar", ["--test_shots", "1", "0"], "--test_shots"),
        ("clip_fsar", ["--text_loss_weight", "nan"], "--text_loss_weight"),
        ("diva", ["--num_noise_draws", "0"], "--num_noise_draws"),
        ("diva", ["--mmvp_pairs", "-1"], "--mmvp_pairs"),
        ("diva_pretrain_diffusion", ["--kl_weight", "-1"], "--kl_weight"),
        ("diva_pretrain_diffusion", ["--vae_learning_rate", "0"], "--vae_learning_rate"),
        ("diva_pretrain_diffusion", ["--stop_after_step", "5", "--max_train_steps", "4"], "--stop_after_step"),
        ("dreamlip", ["--num_subcaptions", "0"], "--num_subcaptions"),
        ("fff", ["--num_pseudo_captions", "-1"], "--num_pseudo_captions"),
        ("groupvit", ["--num_prompts", "-1"], "--num_prompts"),
        ("ma_clip", ["--num_frames", "1"], "--num_frames"),
        ("ma_clip", ["--way", "1"], "--way"),
    ],
)
def test_method_flags_are_refused_naming_the_flag(script, argv, flag, capsys):
    with pytest.raises(SystemExit):
        load_training_script(script).parse_args([*REQUIRED[script], *argv])
    assert f"{flag} must be" in capsys.readouterr().err
