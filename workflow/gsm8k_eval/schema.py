"""The config schema as the one source of every default, and command-line coercion against it.

`workflow/schemas/config.schema.yaml` holds each key's type, description and default. Code that
needs a default (dataclasses, argparse) asks `default("section.key")`; nothing repeats a literal.
"""

from __future__ import annotations

import copy
from dataclasses import field
from functools import cache
from typing import Any

import yaml

from gsm8k_eval import resources

SCHEMA_PATH = resources.schema_path()

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "string": (str,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


@cache
def load_schema() -> dict[str, Any]:
    """The parsed JSON schema (read once per process)."""
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def node(key: str) -> dict[str, Any]:
    """The schema node of a dotted key: `sampling.max_generation_steps`, `checkpoints[].step`."""
    current = load_schema()
    for part in key.split("."):
        name, is_item = part.removesuffix("[]"), part.endswith("[]")
        try:
            current = current["properties"][name]
            current = current["items"] if is_item else current
        except KeyError as error:
            raise KeyError(f"config schema has no key {key!r}") from error
    return current


def default(key: str) -> Any:
    """The schema default of a dotted key (a fresh copy: lists and dicts are never shared)."""
    spec = node(key)
    if "default" not in spec:
        raise KeyError(f"config schema key {key!r} has no default")
    value = copy.deepcopy(spec["default"])
    if spec.get("type") == "object" and isinstance(value, dict):
        return _fill_defaults(spec, value)
    return value


def deprecated_keys(spec: dict[str, Any] | None = None, prefix: str = "") -> list[str]:
    """Dotted keys the schema marks `deprecated: true` (object properties, nested too)."""
    spec = load_schema() if spec is None else spec
    keys = []
    for name, child in spec.get("properties", {}).items():
        key = f"{prefix}{name}"
        keys += [key] if child.get("deprecated") else deprecated_keys(child, f"{key}.")
    return keys


def without_deprecated(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a resolved config without its deprecated keys (their replacements hold the
    values: `apply_deprecations` mapped them before validation filled in defaults)."""
    config = copy.deepcopy(config)
    for key in deprecated_keys():
        *parents, name = key.split(".")
        section = config
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.pop(name, None)
    return config


def default_field(key: str, convert: Any = None) -> Any:
    """A dataclass field whose default is the schema's (`convert` applied, e.g. `tuple`)."""
    value = default(key)
    return field(default=convert(value) if convert else value)


def description(key: str) -> str:
    """A key's description, folded onto one line (for --help texts)."""
    return " ".join(str(node(key).get("description", "")).split())


def choices(key: str) -> list[Any]:
    """The allowed values of an enum key."""
    return list(node(key)["enum"])


def defaults() -> dict[str, Any]:
    """Every top-level key with its default filled in, recursively (as validation fills them:
    objects, and the objects in arrays such as `checkpoints`)."""
    return _fill_defaults(load_schema(), {})


def _fill_defaults(spec: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    for name, child in spec.get("properties", {}).items():
        if name not in value and "default" in child:
            value[name] = copy.deepcopy(child["default"])
        found, items = value.get(name), child.get("items")
        if isinstance(found, dict) and child.get("type") == "object":
            _fill_defaults(child, found)
        elif isinstance(found, list) and isinstance(items, dict) and items.get("type") == "object":
            for entry in found:
                if isinstance(entry, dict):
                    _fill_defaults(items, entry)
    return value


def coerce(config: dict[str, Any]) -> dict[str, Any]:
    """Turn command-line strings into the types the schema asks for, in place.

    Snakemake's `--config key=value` gives nested values (`sampling={decode_rows: 32}`) and
    list items as strings, and `limit=null` as the string "null". Wherever the schema does not
    accept a string, the string is parsed as YAML and kept if it then has an accepted type;
    anything else is left for validation to reject with the key's name.
    """
    _coerce_object(load_schema(), config)
    return config


def _coerce_object(spec: dict[str, Any], value: dict[str, Any]) -> None:
    for name, child in spec.get("properties", {}).items():
        if name in value:
            value[name] = _coerce_value(child, value[name])


def _coerce_value(spec: dict[str, Any], value: Any) -> Any:
    if isinstance(value, str):
        value = _parse_string(spec, value)
    spec = _container_option(spec, value)
    if isinstance(value, dict):
        _coerce_object(spec, value)
    elif isinstance(value, list) and isinstance(spec.get("items"), dict):
        value = [_coerce_value(spec["items"], item) for item in value]
    return value


def _container_option(spec: dict[str, Any], value: Any) -> dict[str, Any]:
    """The `anyOf` alternative of a list's or a mapping's type (e.g. `batch_sizes`, a list or
    one list per sampler), else `spec` itself."""
    kind = "array" if isinstance(value, list) else "object" if isinstance(value, dict) else None
    for option in spec.get("anyOf", []) if kind else []:
        if option.get("type") == kind:
            return option
    return spec


def _parse_string(spec: dict[str, Any], text: str) -> Any:
    if "anyOf" in spec:  # e.g. an integer or "auto": the first alternative that takes the text
        for option in spec["anyOf"]:
            value = _parse_string(option, text)
            if value is not text or option.get("const") == text:
                return value
        return text
    accepted = _accepted_types(spec)
    if accepted is None:
        return text
    if str in accepted and not (type(None) in accepted and text.strip() in {"null", "~"}):
        return text
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    ok = isinstance(parsed, accepted) and not (isinstance(parsed, bool) and bool not in accepted)
    return parsed if ok else text


def _accepted_types(spec: dict[str, Any]) -> tuple[type, ...] | None:
    """Python types a node accepts (None when the node does not say: enums, consts)."""
    if "enum" in spec or "const" in spec:
        values = spec.get("enum", [spec.get("const")])
        return tuple({type(v) for v in values})
    kinds = spec.get("type")
    if kinds is None:
        return None
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    return tuple(t for name in names for t in _JSON_TYPES[name])
