"""Config validation with errors a person can act on: one line per problem, naming the key.

`validate_config` checks a user's config (as written, before defaults are filled in) against
`workflow/schemas/config.schema.yaml` with jsonschema's `iter_errors`, so every problem is
reported at once as `key.path: what is wrong` (plus "did you mean ..." for an unknown key),
never as a dump of the schema. It then checks what the schema cannot express (an explicit
`lora.alpha` for LoRA checkpoints) and fills in the schema's defaults.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Iterable
from typing import Any

from gsm8k_eval import schema


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


__all__ = [
    "check_reference_runtime",
    "config_errors",
    "reference_runtime_or_exit",
    "validate_config",
    "validate_or_exit",
]

BASE_SOURCE = "base"
REFERENCE_INSTALL = 'pip install -e ".[reference]"'
_MAX_VALUE_CHARS = 60


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate a config in place and fill in the schema's defaults; returns it.

    Raises `config.ConfigError` whose message has one line per problem.
    """

    errors = config_errors(config)
    if errors:
        raise ConfigError("\n".join(errors))
    from snakemake.utils import validate

    validate(config, str(schema.SCHEMA_PATH), set_default=True)
    return config


def validate_or_exit(config: dict[str, Any]) -> dict[str, Any]:
    """`validate_config` for the Snakefile: on a bad config, exit with only its error lines
    (Snakemake would add a traceback to an exception)."""

    try:
        return validate_config(config)
    except ConfigError as error:
        raise SystemExit(f"Config error:\n{error}") from None


def config_errors(config: dict[str, Any]) -> list[str]:
    """Every problem of a config as written, one line each (empty when it is valid)."""
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema.load_schema())
    validator = validator_class(schema.load_schema())
    lines: list[str] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: _dotted(e.absolute_path)):
        for line in _error_lines(error):
            if line not in lines:
                lines.append(line)
    return lines or _semantic_errors(config)


def _semantic_errors(config: dict[str, Any]) -> list[str]:
    """Checks the schema cannot express, on a schema-valid config as the user wrote it."""
    return _sampler_batch_size_errors(config) + _lora_errors(config)


def _sampler_batch_size_errors(config: dict[str, Any]) -> list[str]:
    """A per-sampler `batch_sizes` mapping names exactly the samplers of `samplers`."""
    sizes = config.get("batch_sizes")
    if not isinstance(sizes, dict):
        return []
    samplers = config.get("samplers") or schema.default("samplers")
    missing = [s for s in samplers if s not in sizes]
    extra = [s for s in sizes if s not in samplers]
    lines = [
        f"batch_sizes: no batch sizes for sampler {s!r} (samplers lists it): add "
        f"`{s}: [..]` or give one list for every sampler"
        for s in missing
    ]
    return lines + [
        f"batch_sizes.{s}: sampler {s!r} is not in samplers ({', '.join(samplers)}): remove "
        "it or add it to samplers"
        for s in extra
    ]


def _lora_errors(config: dict[str, Any]) -> list[str]:
    """An explicit `lora.alpha` with LoRA checkpoints."""
    lora = config.get("lora") or {}
    lora_checkpoints = [
        str(entry.get("name"))
        for entry in config.get("checkpoints") or []
        if entry.get("source", BASE_SOURCE) != BASE_SOURCE
    ]
    if lora_checkpoints and "alpha" not in lora:
        return [
            f"lora.alpha: required with LoRA checkpoints ({', '.join(lora_checkpoints)}): tunix "
            "checkpoints do not store it, and a wrong alpha restores silently and changes every "
            "logit (scale = alpha / rank); set the value the checkpoints were trained with"
        ]
    return []


def check_reference_runtime(reference_enabled: bool, uses_conda: bool) -> None:
    """An enabled reference stage needs torch where its job runs: here, unless conda gives the
    job its own environment (envs/reference.yaml). Raises ConfigError with the install line."""

    if reference_enabled and not uses_conda and importlib.util.find_spec("torch") is None:
        raise ConfigError(
            "reference.enabled: the PyTorch reference needs torch and transformers, which are "
            f"not installed: {REFERENCE_INSTALL} (or run with --sdm conda, or set "
            "reference.enabled: false)"
        )


def reference_runtime_or_exit(reference_enabled: bool, uses_conda: bool) -> None:
    """`check_reference_runtime` for the Snakefile: exit with its one line."""

    try:
        check_reference_runtime(reference_enabled, uses_conda)
    except ConfigError as error:
        raise SystemExit(f"Config error:\n{error}") from None


def _dotted(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _error_lines(error: Any) -> list[str]:
    where = _dotted(error.absolute_path)
    branch = _typed_branch(error)
    if branch:
        return [line for e in branch for line in _error_lines(e)]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in known]
        return [_unknown_key_line(where, str(key), known) for key in unknown]
    return [f"{where or '(top level)'}: {_describe(error)}"]


def _typed_branch(error: Any) -> list[Any]:
    """For an `anyOf` whose alternatives each declare a type (a list or a mapping), the errors
    of the one alternative of the value's type; empty otherwise (then both are named)."""
    options = error.validator_value if error.validator == "anyOf" else []
    if not options or any("type" not in option for option in options):
        return []
    matching = [i for i, option in enumerate(options) if _has_type(error.instance, option)]
    if len(matching) != 1:
        return []
    return [e for e in error.context if e.relative_schema_path[0] == matching[0]]


def _has_type(value: Any, option: dict[str, Any]) -> bool:
    kinds = option["type"] if isinstance(option["type"], list) else [option["type"]]
    python = {"array": list, "object": dict, "string": str, "integer": int, "number": (int, float)}
    return any(isinstance(value, python.get(kind, ())) for kind in kinds)


def _unknown_key_line(where: str, key: str, known: list[str]) -> str:
    full = f"{where}.{key}" if where else key
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
    return f"{full}: unknown key{hint}"


def _value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _describe(error: Any) -> str:
    """What is wrong, in words, without the schema."""
    kind, expected, value = error.validator, error.validator_value, _value(error.instance)
    messages = {
        "type": lambda: f"{value} is not of type {_types(expected)}",
        "enum": lambda: f"{value} is not one of {', '.join(map(str, expected))}",
        "const": lambda: f"{value} is not allowed: it must be {expected!r}",
        "minimum": lambda: f"{value} is less than the minimum {expected}",
        "maximum": lambda: f"{value} is more than the maximum {expected}",
        "exclusiveMinimum": lambda: f"{value} must be greater than {expected}",
        "minItems": lambda: f"{value} needs at least {expected} item(s)",
        "minProperties": lambda: f"{value} needs at least {expected} key(s)",
        "uniqueItems": lambda: f"{value} has duplicate items",
        "pattern": lambda: f"{value} does not match the pattern {expected}",
        "required": lambda: f"missing required key(s) {', '.join(_missing(error))}",
        "oneOf": lambda: f"{value} is not valid here ({_one_line(error.schema)})",
        "anyOf": lambda: (
            " or ".join(dict.fromkeys(_describe(e) for e in error.context))
            or f"{value} is not valid here ({_one_line(error.schema)})"
        ),
    }
    describe = messages.get(kind)
    return describe() if describe else _value(error.message)


def _types(expected: Any) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    return " or ".join(names)


def _missing(error: Any) -> list[str]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [key for key in error.validator_value if key not in instance]


def _one_line(spec: dict[str, Any]) -> str:
    return " ".join(str(spec.get("description", "see the schema")).split())[:120]
