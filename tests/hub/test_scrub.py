"""`scrub_secrets`: what reaches a card, a manifest or a tracker has no credentials and no local directory layout."""

import pytest

from hf_clipzoo.hub.scrub import is_secret_name, scrub_secrets, scrub_string

GHP = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
PAT = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
OPENAI = "sk-proj-abcdEFGH1234ijklMNOP5678"
HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz12345678"
AKIA = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
COMMIT = "9756dd9c0ffee0123456789abcdef0123456789a"  # lowercase hex, 40 long: a git commit, not a key
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

STRING_CASES = [
    # (input, expected)
    ("https://user:pass@host/path", "https://***@host/path"),
    ("clone https://oauth2:glpat-abcdefghij0123456789@gitlab.com/x.git now", "clone https://***@gitlab.com/x.git now"),
    (f"https://{GHP}@github.com/org/repo", "https://***@github.com/org/repo"),
    (f"token is {GHP}.", "token is ***."),
    (f"pat={PAT}", "pat=***"),
    (f"key {OPENAI} end", "key *** end"),
    (f"{HF}", "***"),
    (f"id {AKIA}, secret {AWS_SECRET}", "id ***, secret ***"),
    ("python train.py --hub_token abc123 --seed 0", "python train.py --hub_token *** --seed 0"),
    ("python train.py --api-key=abc123 --lr 1e-3", "python train.py --api-key=*** --lr 1e-3"),
    ("--output_dir --hub_token abc", "--output_dir --hub_token ***"),
    ("https://tracker.example/api?token=s3cr3t&project=p", "https://tracker.example/api?token=***&project=p"),
    ("--report_url https://h/?password=x&a=1", "--report_url https://h/?password=***&a=1"),
    ("HF_TOKEN=abc python x.py", "HF_TOKEN=*** python x.py"),
    ("curl -H 'Authorization: Bearer eyJhbGciOi.J9x-y_z' url", "curl -H 'Authorization: Bearer ***' url"),
    ("/home/alice/runs/clip-world", "<local>/clip-world"),
    ("/tmp/pytest-7/out/", "<local>/out"),
    ("/work/main/foundations/clip", "<local>/clip"),
    ("~/data/world", "<local>/world"),
    ("C:\\Users\\Bob\\models\\clip", "<local>/clip"),
    ("D:/data/set", "<local>/set"),
    ("\\\\server\\share\\run", "<local>/run"),
    ("file:///home/alice/x.tar", "file://<local>/x.tar"),
    (
        "python t.py --output_dir /home/alice/out --data=/mnt/d/world",
        "python t.py --output_dir <local>/out --data=<local>/world",
    ),
    ("cached in (/var/cache/zoo)", "cached in (<local>/zoo)"),
    # Left alone: hub ids, relative paths, URL paths, prose about tokens, hashes, ratios.
    ("hf-clipzoo/embedded-world", "hf-clipzoo/embedded-world"),
    ("training_scripts/clip.py --dataset synthetic", "training_scripts/clip.py --dataset synthetic"),
    ("https://huggingface.co/openai/clip-vit-base-patch32", "https://huggingface.co/openai/clip-vit-base-patch32"),
    ("the class token and patch tokens", "the class token and patch tokens"),
    ("a / b, loss/total, 1/2", "a / b, loss/total, 1/2"),
    (COMMIT, COMMIT),
    (SHA256, SHA256),
    ("hf_clipzoo.models.clip", "hf_clipzoo.models.clip"),
    ("task-specific desk-top", "task-specific desk-top"),
]


@pytest.mark.parametrize(("text", "expected"), STRING_CASES)
def test_scrub_string(text, expected):
    assert scrub_string(text) == expected


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("hub_token", True), ("HF_TOKEN", True), ("token", True), ("wandb_api_key", True), ("apikey", True),
        ("aws_secret_access_key", True), ("client_secret", True), ("db-password", True), ("auth", True),
        ("max_tokens", False), ("max_new_tokens", False), ("num_sampled_tokens", False), ("token_selection", False),
        ("author", False), ("Authorization", True), ("cookie", True), ("learning_rate", False), ("keyframes", False),
    ],
)  # fmt: skip
def test_is_secret_name(name, secret):
    assert is_secret_name(name) is secret


def test_scrub_secrets_nested():
    value = {
        "hub_token": "anything",
        "HF_TOKEN": "anything",
        "learning_rate": 1e-3,
        "push_to_hub": False,
        "resume": None,
        "output_dir": "/home/alice/runs/x",
        "commit": COMMIT,
        "tracker": {"api_key": "k", "url": "https://u:p@wandb.example", "dirs": ["/tmp/a/b", ("C:\\x\\y", 3)]},
        "commands": [f"push --token {HF}", {"env": f"GH={GHP}"}],
        "/home/alice/key-file": "a key that is a path",
        "notes": f"copied from /work/alice/exp with {AKIA}",
    }
    assert scrub_secrets(value) == {
        "learning_rate": 1e-3,
        "push_to_hub": False,
        "resume": None,
        "output_dir": "<local>/x",
        "commit": COMMIT,
        "tracker": {"url": "https://***@wandb.example", "dirs": ["<local>/b", ["<local>/y", 3]]},
        "commands": ["push --token ***", {"env": "GH=***"}],
        "<local>/key-file": "a key that is a path",
        "notes": "copied from <local>/exp with ***",
    }
    assert value["tracker"]["api_key"] == "k"  # the input is not modified


def test_the_shipped_manifest_is_already_clean():
    """Commits, sha256 digests, commands and relative file names pass through untouched (no false positives)."""
    import json

    from hf_clipzoo.foundations import FOUNDATIONS_DIR, MANIFEST_FILE

    manifest = json.loads((FOUNDATIONS_DIR / MANIFEST_FILE).read_text())
    assert scrub_secrets(manifest) == manifest


def test_loggable_config_is_scrubbed():
    """What trackers and cards receive from the training scripts."""
    import argparse

    from hf_clipzoo.training.arguments import loggable_config

    args = argparse.Namespace(
        hub_token="abc", output_dir="/home/alice/runs/clip", learning_rate=1e-3, model_name_or_path="org/base",
        report_url="https://bob:pw@tracker", dataset="C:\\data\\world", token_selection="random", tags=["x"],
    )  # fmt: skip
    assert loggable_config(args) == {
        "output_dir": "<local>/clip", "learning_rate": 1e-3, "model_name_or_path": "org/base",
        "report_url": "https://***@tracker", "dataset": "<local>/world", "token_selection": "random",
    }  # fmt: skip


def test_card_metadata_names_hub_ids_only(tmp_path):
    from hf_clipzoo.hub.model_card import is_hub_id

    (tmp_path / "org").mkdir()
    assert is_hub_id("hf-clipzoo/embedded-world") and is_hub_id("openai/clip-vit-base-patch32")
    for local in ("/home/alice/data", "~/data/x", "./org/x", "C:\\data\\x", "synthetic", None, str(tmp_path / "org"),
                  "bench_out/clip/final", "org/../x"):  # fmt: skip
        assert not is_hub_id(local), local
