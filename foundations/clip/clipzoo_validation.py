"""Value rules shared by the model configs and the training scripts' flags: one rule, one message for a bad value.

A rule knows what it accepts and says so in words (`"an integer >= 1"`); `check_fields` applies a table of rules to a
config and raises a `ValueError` naming the field, its value and the rule. The configs also warn about keyword
arguments that are no field (a typo such as `num_pseudo_caption` would otherwise be stored and never read), while the
keys transformers itself writes into or passes with a `config.json` stay silent.

This module is bundled into saved model folders for `trust_remote_code` loading (see `hub/export.py`): it imports
only the standard library and transformers.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import GenerationConfig
from transformers.activations import ACT2FN


def _is_number(value: Any, kind: type) -> bool:
    # `True` is an `int` to Python, never a count or a rate here.
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, numbers.Real) and math.isfinite(value)


@dataclass(frozen=True)
class Number:
    """An `int` (`kind=int`) or a finite real number (`kind=float`; NaN and ±inf never pass) within optional bounds."""

    kind: type = float
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    optional: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if not _is_number(value, self.kind):
            return False
        if self.minimum is not None and (value <= self.minimum if self.exclusive_minimum else value < self.minimum):
            return False
        if self.maximum is not None and (value >= self.maximum if self.exclusive_maximum else value > self.maximum):
            return False
        return True

    @property
    def expected(self) -> str:
        noun = "an integer" if self.kind is int else "a finite number"
        if self.minimum is not None and self.maximum is not None:
            left = "(" if self.exclusive_minimum else "["
            right = ")" if self.exclusive_maximum else "]"
            text = f"{noun} in {left}{self.minimum:g}, {self.maximum:g}{right}"
        elif self.minimum is not None:
            text = f"{noun} {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        elif self.maximum is not None:
            text = f"{noun} {'<' if self.exclusive_maximum else '<='} {self.maximum:g}"
        else:
            text = noun
        return text + (" or None" if self.optional else "")


@dataclass(frozen=True)
class OneOf:
    choices: tuple
    optional: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        # Compared with the type too: `True == 1` must not pass for a choice 1.
        return any(value == choice and type(value) is type(choice) for choice in self.choices)

    @property
    def expected(self) -> str:
        return f"one of {self.choices}" + (" or None" if self.optional else "")


@dataclass(frozen=True)
class Boolean:
    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    expected = "True or False"


@dataclass(frozen=True)
class Text:
    """A string; `non_empty` also refuses `""` and whitespace."""

    non_empty: bool = False

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and (not self.non_empty or bool(value.strip()))

    @property
    def expected(self) -> str:
        return "a non-empty string" if self.non_empty else "a string"


@dataclass(frozen=True)
class ListOf:
    """A list or tuple whose items all pass `item`, with at least `min_length` items (exactly `length` if given)."""

    item: Any
    min_length: int = 0
    length: int | None = None
    optional: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if not isinstance(value, (list, tuple)):
            return False
        if (self.length is not None and len(value) != self.length) or len(value) < self.min_length:
            return False
        return all(self.item.accepts(v) for v in value)

    @property
    def expected(self) -> str:
        if self.length is not None:
            size = f"{self.length} "
        elif self.min_length:
            size = f"at least {self.min_length} "
        else:
            size = ""
        return f"a list of {size}items, each {self.item.expected}" + (" or None" if self.optional else "")


POSITIVE_INT = Number(int, minimum=1)
NON_NEGATIVE_INT = Number(int, minimum=0)
POSITIVE = Number(float, minimum=0, exclusive_minimum=True)
NON_NEGATIVE = Number(float, minimum=0)
FINITE = Number(float)
PROBABILITY = Number(float, minimum=0, maximum=1)
DROPOUT = Number(float, minimum=0, maximum=1, exclusive_maximum=True)
BOOLEAN = Boolean()
ACTIVATION = OneOf(tuple(ACT2FN))
TOKEN_ID = Number(int, minimum=0, optional=True)


def check_value(name: str, value: Any, rule) -> None:
    """Raise a `ValueError` naming `name` when `value` breaks `rule`."""
    if not rule.accepts(value):
        raise ValueError(f"`{name}` must be {rule.expected}, got {value!r}.")


def check_fields(config: Any, rules: Mapping[str, Any], prefix: str = "") -> None:
    """Apply `{field: rule}` to the attributes of `config`; `prefix` names a sub-config (`"vision_config."`)."""
    for name, rule in rules.items():
        check_value(prefix + name, getattr(config, name), rule)


# Keys that are no dataclass field of a config but that transformers writes into a `config.json` or passes to a
# config's constructor itself: they must load without a warning.
_TRANSFORMERS_KEYS = frozenset(
    {
        "model_type",
        "name_or_path",
        "_name_or_path",
        "auto_map",
        "custom_pipelines",  # written by `Pipeline.save_pretrained` (and the zoo's models), read by `pipeline()`
        "torch_dtype",
        "num_labels",
        "_commit_hash",
        "output_attentions",
        "attn_implementation",
        "experts_implementation",
        "_attn_implementation_internal",
        "_experts_implementation_internal",
        "_attn_implementation_autoset",
        "per_layer_config",
        "rope_scaling",
        "rope_theta",
        # Common attributes of transformers 4 configs, still present in many `config.json`s on the Hub.
        "torchscript",
        "use_bfloat16",
        "tf_legacy_loss",
        "pruned_heads",
        "tie_word_embeddings",
        "is_decoder",
        "cross_attention_hidden_size",
        "add_cross_attention",
        "tie_encoder_decoder",
        "finetuning_task",
        "tokenizer_class",
        "prefix",
        "bos_token_id",
        "pad_token_id",
        "eos_token_id",
        "sep_token_id",
        "decoder_start_token_id",
        "task_specific_params",
        "gradient_checkpointing",
    }
    | set(GenerationConfig._get_default_generation_params())
)


def _field_names(config_class: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class)}


def check_extra_keys(
    config_class: type, given: Mapping[str, Any], owner: str | None = None, known: Sequence[str] = ()
) -> None:
    """Warn about each key of `given` that `config_class` does not know; refuse its read-only properties.

    `given` holds the keyword arguments a config's `__post_init__` received beyond its fields (or a sub-config
    dict); `known` adds keys the caller handles itself. transformers stores unknown keys as attributes,
    so a misspelt field silently keeps its default: the warning names the key and the closest field.
    """
    owner = owner or config_class.__name__
    fields = _field_names(config_class)
    for key, value in given.items():
        if key in fields or key in _TRANSFORMERS_KEYS or key in known:
            continue
        attribute = getattr(config_class, key, None)
        if isinstance(attribute, property) and attribute.fset is None:
            raise ValueError(
                f"`{key}` is computed by {owner} from its other fields and cannot be passed (got {key}={value!r})."
            )
        close = difflib.get_close_matches(key, sorted(fields), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        warnings.warn(
            f"{owner} got the unknown key `{key}`: it is stored but nothing reads it.{hint}",
            UserWarning,
            stacklevel=3,
        )


def check_sub_config_dicts(config: Any, sub_configs: Mapping[str, tuple[type, Mapping[str, Any]]]) -> None:
    """For each sub-config given as a dict (`vision_config={...}`), before it is built: warn about its unknown keys
    and check the values it sets against `{name: (config_class, rules)}`. Checking before the build matters because
    transformers' own checks (e.g. `hidden_size % num_attention_heads`) fail with a `ZeroDivisionError` on a 0."""
    for name, (sub_class, rules) in sub_configs.items():
        value = getattr(config, name)
        if not isinstance(value, Mapping):
            continue
        check_extra_keys(sub_class, value, owner=f"{type(config).__name__}.{name}")
        for key, rule in rules.items():
            if key in value:
                check_value(f"{name}.{key}", value[key], rule)


__all__ = [
    "ACTIVATION",
    "BOOLEAN",
    "DROPOUT",
    "FINITE",
    "NON_NEGATIVE",
    "NON_NEGATIVE_INT",
    "POSITIVE",
    "POSITIVE_INT",
    "PROBABILITY",
    "TOKEN_ID",
    "Boolean",
    "ListOf",
    "Number",
    "OneOf",
    "Text",
    "check_extra_keys",
    "check_fields",
    "check_sub_config_dicts",
    "check_value",
]
