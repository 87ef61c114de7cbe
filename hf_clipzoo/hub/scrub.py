"""What may leave the machine in a card, a manifest or a tracker's config: no credentials, no local directory layout.

`scrub_secrets` is the one function every writer of run metadata goes through (`render_model_card`,
`loggable_config`, the foundations manifest). It cleans nested dicts and lists and looks inside longer strings (a
command line, a URL), because that is where credentials end up: `--hub_token hf_...` in a recorded command,
`https://user:pass@host` in a tracker URL, an absolute path in `output_dir`.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
LOCAL_PREFIX = "<local>"

# Keys whose value is a credential, whatever it looks like (`hub_token`, `HF_TOKEN`, `wandb_api_key`,
# `aws_secret_access_key`, `client_secret`, ...): names that end in a credential word. Hyper-parameters that merely
# mention tokens (`max_new_tokens`, `token_selection`) stay.
_SECRET_NAME = re.compile(
    r"(^|_)(token|secrets?|passwords?|passwd|pwd|api_?keys?|access_?keys?|private_?keys?|secret_?keys?|credentials?"
    r"|auth|authorization|cookie)$",
    re.I,
)
# Values that are credentials under any name: Hugging Face, GitHub, OpenAI-style, Slack, GitLab and AWS keys, and
# whatever follows `Bearer ` (an HTTP authorization header).
_TOKEN_VALUE = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{16,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|sk-[A-Za-z0-9_-]{16,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16})\b"
    r"|(?<=\bBearer )[A-Za-z0-9._~+/-]+=*"
    r"|(?<=\bbearer )[A-Za-z0-9._~+/-]+=*"
)
# An AWS secret access key: 40 characters of base64 with both cases and a digit. Git commits and sha256 digests are
# lowercase hex (and 40 or 64 long), so they never match.
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
                         r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")  # fmt: skip
# `scheme://user:password@host` and `scheme://token@host`: everything before the `@` goes.
_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
# `--hub_token VALUE` / `--api-key=VALUE` (flags) and `?token=VALUE&...` / `PASSWORD=VALUE` inside a longer string.
_NAMED_VALUE = re.compile(
    r"(?P<flag>(?<![\w-])--[A-Za-z][\w-]*)(?P<flag_sep>=|\s+)(?P<flag_value>(?!-)[^\s&\"',;]+)"
    r"|(?P<name>\b[A-Za-z][\w-]*)=(?P<value>[^\s&\"',;]+)"
)
# Absolute local paths: POSIX (`/home/...`, `/tmp/...`, `file:///...`), home-relative (`~/...`) and Windows
# (`C:\...`, `\\server\share\...`). A path starts at the beginning of the string or after a space, quote, `=`, `(`,
# `,` or `;` (so the path part of `https://host/a/b` and relative names such as `org/model` are left alone).
_LOCAL_PATH = re.compile(r"(?:^|(?<=[\s\"'=(,;\[])|(?<=file://))(?:~?/(?!/)|[A-Za-z]:[\\/]|\\\\)[^\s\"',;()\[\]]+")


def is_secret_name(name: str) -> bool:
    """True for argument / key names that hold credentials (`hub_token`, `HF_TOKEN`, `api-key`, ...)."""
    return bool(_SECRET_NAME.search(name.replace("-", "_")))


def _neutral_path(match: re.Match) -> str:
    path = match.group(0)
    parts = [part for part in re.split(r"[\\/]+", path) if part and not re.fullmatch(r"[A-Za-z]:|~", part)]
    return f"{LOCAL_PREFIX}/{parts[-1]}" if parts else LOCAL_PREFIX


def _redact_named(match: re.Match) -> str:
    if match.group("flag") is not None:
        name, sep, value = match.group("flag", "flag_sep", "flag_value")
    else:
        name, sep, value = match.group("name"), "=", match.group("value")
    if is_secret_name(name.lstrip("-")):
        return f"{name}{sep}{REDACTED}"
    return f"{name}{sep}{_NAMED_VALUE.sub(_redact_named, value)}"  # `--url https://h/?token=...`


def scrub_string(text: str) -> str:
    """`text` with credentials replaced by `***` and absolute local paths by `<local>/<last component>`."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _NAMED_VALUE.sub(_redact_named, text)
    text = _TOKEN_VALUE.sub(REDACTED, text)
    text = _LOCAL_PATH.sub(_neutral_path, text)
    return _AWS_SECRET.sub(REDACTED, text)


def scrub_secrets(value: Any) -> Any:
    """A copy of `value` fit to publish: entries whose key names a credential are dropped, every string (keys of
    nested dicts included) goes through `scrub_string`, lists and tuples are cleaned item by item (tuples come back
    as lists, as JSON has them). Numbers, booleans and `None` are returned as they are."""
    if isinstance(value, dict):
        return {
            (scrub_string(key) if isinstance(key, str) else key): scrub_secrets(item)
            for key, item in value.items()
            if not (isinstance(key, str) and is_secret_name(key))
        }
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(item) for item in value]
    if isinstance(value, str):
        return scrub_string(value)
    return value


__all__ = ["LOCAL_PREFIX", "REDACTED", "is_secret_name", "scrub_secrets", "scrub_string"]
