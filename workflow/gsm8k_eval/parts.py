"""One evaluation split into N jobs: part K of N is a contiguous run of whole shards.

Parts cut the shard sequence, never a shard, so every shard holds exactly the examples (and is
generated in exactly the same sampler call) that it holds in a single-job run: concatenating the
parts' rollouts in order gives the single job's rollouts.jsonl byte for byte.
"""

from __future__ import annotations

import re
from pathlib import Path

_PART = re.compile(r"^\s*(\d+)\s*(?:/|-of-)\s*(\d+)\s*$")
_LABEL = re.compile(r"\d+-of-\d+")
PARTS_DIR = "parts"


def parse_part(text: str) -> tuple[int, int]:
    """`K/N` or `K-of-N` (1 <= K <= N) as (K, N)."""
    match = _PART.match(text)
    if not match:
        raise ValueError(f"part {text!r}: expected K/N (e.g. 2/3)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise ValueError(f"part {text!r}: K must be between 1 and N")
    return index, count


def part_label(index: int, count: int) -> str:
    """The folder name of part `index` of `count` (`2-of-3`)."""
    return f"{index}-of-{count}"


def part_labels(count: int) -> list[str]:
    """Folder names of all parts of an evaluation split into `count` jobs, in order."""
    return [part_label(k, count) for k in range(1, count + 1)]


def part_shards(shard_count: int, part: tuple[int, int] | None) -> range:
    """Indices of the shards part (K, N) generates (all of them when `part` is None).

    Balanced contiguous ranges: part K gets shards [floor((K-1)S/N), floor(KS/N)); a part may be
    empty when there are fewer shards than parts.
    """
    if part is None:
        return range(shard_count)
    index, count = part
    return range((index - 1) * shard_count // count, index * shard_count // count)


def is_part_dir(folder: Path) -> bool:
    """Whether `folder` is `<eval dir>/parts/K-of-N` (one job's share of an evaluation)."""
    return folder.parent.name == PARTS_DIR and bool(_LABEL.fullmatch(folder.name))
