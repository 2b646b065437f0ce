"""Cutting a text at its first stop sequence: the one function the engine's stop detection
(`stops`) and the grading (`scoring`) share. It sits apart from both so that the generation
stage's code digest holds no grading code and the score stage's no JAX."""

from __future__ import annotations

from collections.abc import Iterable


def truncate_response(text: str, stop_sequences: Iterable[str]) -> str:
    """Cut ``text`` at the earliest occurrence of any (non-empty) stop sequence."""
    cut = len(text)
    for stop in stop_sequences:
        if stop and (index := text.find(stop)) != -1:
            cut = min(cut, index)
    return text[:cut]
