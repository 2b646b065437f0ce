"""Shared pieces of the subcommands: registration, schema-backed flags, argument types."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from gsm8k_eval import schema

Handler = Callable[[argparse.Namespace], None]
# Option fields whose flag is spelled otherwise (field name -> argparse dest).
FLAG_FOR_FIELD = {"dataset_path": "dataset", "fewshot_path": "fewshot_data"}


def subparser(sub, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """A subcommand reachable as `name` and as its snake_case rule name."""
    aliases = [alias for alias in [name.replace("-", "_")] if alias != name]
    parser = sub.add_parser(name, aliases=aliases, help=help_text, description=help_text)
    parser.set_defaults(handler=handler, command=name, parser=parser)
    return parser


def schema_option(
    parser: argparse.ArgumentParser, flag: str, key: str, *aliases: str, **kwargs: object
) -> None:
    """A flag whose default, help and choices come from the config schema's key."""
    spec = schema.node(key)
    if "enum" in spec:
        kwargs.setdefault("choices", spec["enum"])
    default = schema.default(key)
    parser.add_argument(
        flag,
        *aliases,
        default=tuple(default) if isinstance(default, list) else default,
        help=f"{schema.description(key)} (config: {key}; default: %(default)s)",
        **kwargs,
    )


def options_from(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """An options dataclass from the parsed flags: each field takes the flag of its name (see
    `FLAG_FOR_FIELD`) unless `given`; fields without a flag keep their defaults."""
    values = dict(given)
    for spec in dataclasses.fields(cls):
        flag = FLAG_FOR_FIELD.get(spec.name, spec.name)
        if spec.name not in values and hasattr(args, flag):
            values[spec.name] = getattr(args, flag)
    return cls(**values)


# argparse prefixes each message with the flag: "argument --batch-size: expected ...".


def integer(text: str, what: str = "an integer") -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = integer(text, "a positive integer")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = integer(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in (0, 1] (top_p)."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def auto_or(parse: Callable[[str], int]) -> Callable[[str], int | str]:
    """A flag type taking `auto` (a shape resolved from the device: shapes.py) or `parse`'s."""

    def parse_or_auto(text: str) -> int | str:
        return "auto" if text == "auto" else parse(text)

    parse_or_auto.__name__ = f"auto or {parse.__name__}"
    return parse_or_auto


def at_least_two(text: str) -> int:
    value = integer(text, "an integer >= 2")
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"must be at least 2 (a 1-row matmul takes another kernel), got {text!r}"
        )
    return value


def part(text: str) -> tuple[int, int]:
    from gsm8k_eval.parts import parse_part

    try:
        return parse_part(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def optional_str(text: str) -> str | None:
    """An empty string (as Snakemake passes an unset param) means None."""
    return text or None


def optional_int(text: str) -> int | None:
    return integer(text) if text else None


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.replace(" ", "").split(",") if item)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 1,106, got {text!r}"
        ) from None
