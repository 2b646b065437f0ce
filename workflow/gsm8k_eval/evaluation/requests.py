"""Sampled evaluation's requests (issue 24): n samples per question, each its own request.

A request is (question, sample index). With `temperature > 0` every question becomes
`num_samples` requests, question-major (q0 s0, q0 s1, ..., q1 s0, ...), scheduled like any
prompt; each gets its PRNG key from (sampling seed, question id, sample index) alone
(`draw.request_keys`), so where and with whom it is decoded never changes its tokens. At
temperature 0 nothing changes: one request per question, no key, no new output field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# generations.jsonl / rollouts.jsonl fields of a sampled run (absent from greedy ones).
SAMPLE_FIELDS = ("sample_index", "temperature", "top_k", "top_p", "sampling_seed")


def is_sampled(options: Any) -> bool:
    """Whether `options` (EvaluateOptions or alike) asks for sampled decoding."""
    return float(getattr(options, "temperature", 0) or 0) > 0


def check_sampling(temperature: float, num_samples: int, sampler: str | None = None) -> None:
    """A `ValueError` for settings that cannot be honoured: several samples of a greedy run
    (they would all be the same), or sampling with the greedy-only static sampler."""
    if num_samples > 1 and temperature <= 0:
        raise ValueError(
            f"num_samples {num_samples} needs temperature > 0 (greedy samples are all identical)"
        )
    if temperature > 0 and sampler == "static":
        raise ValueError(
            "the static sampler decodes greedily: temperature > 0 needs the fixed sampler "
            "(batch invariant) or tunix (its own sampling, the negative control)"
        )


def expand(items: Sequence[Any], num_samples: int) -> list[Any]:
    """Each item repeated `num_samples` times in a row (question-major request order)."""
    return [item for item in items for _ in range(num_samples)]


def sample_indices(questions: int, num_samples: int) -> list[int]:
    """The sample index of each request of `questions` questions, question-major."""
    return list(range(num_samples)) * questions


def question_key(example: Any) -> str:
    """The question id a request's key derives from: the dataset id, as text."""
    return str(example.id)


def sample_fields(options: Any, index: int) -> dict[str, Any]:
    """The sampled-run fields of one generations.jsonl row (see `SAMPLE_FIELDS`)."""
    values = (index, options.temperature, options.top_k, options.top_p, options.sampling_seed)
    return dict(zip(SAMPLE_FIELDS, values, strict=True))
