"""Prompt formats, rendered from Jinja2 templates in ``prompts/*.j2``.

``chat``        Gemma instruction-tuned turn format; asks for ``\\boxed{}`` or ``#### n``.
``tunix_grpo``  tunix's GRPO gsm8k format (``tunix/examples/data/math_dataset.py`` in
                google-tunix 0.1.7: system prompt asking for ``<reasoning>``/``<answer>``
                tags, prepended to the question in the user turn; no newline after
                ``<start_of_turn>model``), i.e. what tunix-trained checkpoints saw.
``fewshot``     lm-eval gsm8k: ``Question: q\\nAnswer: a\\n\\n`` shots from the train split,
                ending in ``Question: q\\nAnswer:``; the response is cut at ``Question:``.

Shot selection (fewshot): one permutation of the train file seeded by ``seed``; a question
gets the first ``num_shots`` entries of it whose question differs from its own. Shots thus
do not depend on the order in which questions are rendered (lm-eval instead draws fresh
shots per document from one running RNG, so its prompts depend on document order).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from pathlib import Path

import jinja2

from gsm8k_eval import resources, schema
from gsm8k_eval.data import Example, load_examples

TEMPLATES: tuple[str, ...] = ("chat", "tunix_grpo", "fewshot")
TEMPLATE_DIR = resources.prompt_template_dir()
STOP_SEQUENCES: dict[str, tuple[str, ...]] = {
    "chat": (),
    "tunix_grpo": (),
    "fewshot": ("Question:", "</s>", "<|im_end|>"),  # lm-eval gsm8k v3 `until`
}
# tunix.utils.token_sanitization: control tokens removed from questions before templating.
CONTROL_TOKENS: tuple[str, ...] = (
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    "<eos>",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
)
_CONTROL_TOKENS = re.compile("|".join(map(re.escape, CONTROL_TOKENS)))


@dataclass(frozen=True)
class PromptConfig:
    """Which template to render and, for ``fewshot``, how to pick shots."""

    template: str = field(default_factory=lambda: schema.default("prompt.template"))
    num_shots: int = field(default_factory=lambda: schema.default("prompt.num_shots"))
    seed: int = field(default_factory=lambda: schema.default("prompt.seed"))
    train_path: Path | None = None

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(
                f"unknown prompt template {self.template!r}; valid: {', '.join(TEMPLATES)}"
            )
        if self.num_shots < 0:
            raise ValueError(f"num_shots must be >= 0, got {self.num_shots}")


def _environment() -> jinja2.Environment:
    """Plain-text Jinja2 environment: no escaping, exact whitespace, strict variables."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def sanitize_control_tokens(text: str) -> str:
    """Remove chat control tokens from user text, as tunix does for its GRPO data."""
    return _CONTROL_TOKENS.sub("", text)


class PromptBuilder:
    """Renders one question into the configured prompt format."""

    def __init__(self, config: PromptConfig) -> None:
        self.config = config
        self._template = _environment().get_template(f"{config.template}.j2")

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """Strings at which a response is cut before scoring (empty: EOS only)."""
        return STOP_SEQUENCES[self.config.template]

    @cached_property
    def _shot_pool(self) -> list[Example]:
        """Train examples in this seed's fixed order (loaded on first few-shot render)."""
        if self.config.train_path is None:
            raise ValueError(
                "the fewshot template needs the GSM8K train split for its examples "
                "(config: dataset.fewshot_source; CLI: --fewshot-data)"
            )
        pool = load_examples(Path(self.config.train_path))
        if len(pool) <= self.config.num_shots:
            raise ValueError(
                f"{self.config.train_path} has {len(pool)} examples; "
                f"need more than num_shots={self.config.num_shots}"
            )
        random.Random(self.config.seed).shuffle(pool)
        return pool

    def shots(self, question: str) -> list[Example]:
        """The few-shot examples for ``question`` (never the question itself)."""
        if self.config.template != "fewshot" or self.config.num_shots == 0:
            return []
        key = question.strip()
        others = (shot for shot in self._shot_pool if shot.question.strip() != key)
        chosen = list(islice(others, self.config.num_shots))
        if len(chosen) < self.config.num_shots:
            raise ValueError(f"not enough train examples differing from the question: {key!r}")
        return chosen

    def render(self, question: str) -> str:
        """The full prompt text for ``question`` (BOS is added by the tokenizer, not here)."""
        if self.config.template == "tunix_grpo":
            question = sanitize_control_tokens(question)
        return self._template.render(question=question, shots=self.shots(question))
