"""One generations.jsonl line: what the model produced for one example, ungraded."""

from __future__ import annotations

from typing import Any

from gsm8k_eval.evaluation.requests import sample_fields


def generation_row(options: Any, work: Any, index: int, generation: Any) -> dict[str, Any]:
    """The example, its prompt and the generation (text, tokens, float32 logits, stop reason).

    `options` has `batch_size` and `checkpoint_name`; `work` has `examples`, `prompts` and
    `prompt_ids` (the reference stage passes its own). `answer` is the dataset's reference
    solution, which the `score` stage grades against. A sampled run's rows (`work` has
    `sample_indices`) add the sample index and sampling settings (`requests.SAMPLE_FIELDS`)."""
    example = work.examples[index]
    indices = getattr(work, "sample_indices", None)
    sampled = {} if indices is None else sample_fields(options, indices[index])
    return {
        "id": example.id,
        "question": example.question,
        "answer": example.answer,
        "prompt": work.prompts[index],
        "response": generation.text,
        "tokens": [int(t) for t in generation.tokens],
        "num_steps": generation.num_steps,
        "stop_reason": generation.stop_reason,
        "token_logits": [float(x) for x in generation.token_logits],
        "prompt_tokens": len(work.prompt_ids[index]),
        "batch_size": options.batch_size,
        "checkpoint": options.checkpoint_name,
        **sampled,
    }
