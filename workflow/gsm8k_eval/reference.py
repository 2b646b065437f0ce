"""The PyTorch reference stage: Hugging Face `transformers` greedy generation of the model
directory, on the very prompt token ids the JAX evaluation feeds its sampler.

Same examples, prompt rendering (`evaluation.workload.render_prompts`), tokenizer, max new
tokens, EOS ids and stop sequences (`stops.settle`: lm-eval `until` cutting). It writes
generations.jsonl and generation.json like the evaluate stage (`evaluation.rows`), and the
`score` stage grades them with the same function, so `rollouts.jsonl` has the evaluate stage's
schema and can be compared with it token by token (report section "JAX vs PyTorch").

The model directory (`gsm8k-eval fetch-model`) is already in the HF layout (`config.json` with
Gemma 3 text keys, `model.safetensors` with HF tensor names), so `load_torch_model` hands it to
`transformers` as is. This is the only module that imports torch or transformers, and only
inside functions: `pip install -e ".[reference]"` (or envs/reference.yaml) brings them.
The base model only: a LoRA checkpoint is refused (`ReferenceError`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsm8k_eval import fingerprint, schema
from gsm8k_eval.evaluation.options import GENERATION_RECORD, GENERATIONS
from gsm8k_eval.evaluation.record import dataset_sha256
from gsm8k_eval.io import read_json, write_json, write_jsonl

log = logging.getLogger(__name__)

FRAMEWORK = "pytorch"
INSTALL_HINT = (
    'install torch and transformers with `pip install -e ".[reference]"` (or run snakemake '
    "with --sdm conda: envs/reference.yaml)"
)
GEMMA3_TEXT = "gemma3_text"
VERSIONED_PACKAGES = ("gsm8k-eval", "torch", "transformers", "tokenizers", "numpy")


class ReferenceError(RuntimeError):
    """The reference cannot run as asked (message is user-facing)."""


@dataclass(frozen=True)
class ReferenceOptions:
    """One reference run: the base model on the evaluate stage's prompts."""

    dataset_path: Path
    model_dir: Path
    output_dir: Path
    checkpoint_name: str = "base"
    limit: int | None = schema.default_field("limit")
    dtype: str = schema.default_field("reference.dtype")
    batch_size: int = schema.default_field("reference.batch_size")
    device: str = schema.default_field("reference.device")
    max_generation_steps: int = schema.default_field("sampling.max_generation_steps")
    max_prompt_length: int = schema.default_field("sampling.max_prompt_length")
    eos_tokens: tuple[int, ...] = schema.default_field("sampling.eos_tokens", tuple)
    prompt_template: str = schema.default_field("prompt.template")
    num_shots: int = schema.default_field("prompt.num_shots")
    prompt_seed: int = schema.default_field("prompt.seed")
    fewshot_path: Path | None = None
    dataset_manifest: Path | None = None
    model_source: str | None = None
    config_hash: str | None = None


@dataclass
class _Work:
    """What `evaluation.rows.generation_row` reads."""

    examples: list[Any]
    prompts: list[str]
    prompt_ids: list[list[int]]
    stop_sequences: tuple[str, ...]


# ------------------------------------------------------------------------ torch


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as error:
        raise ReferenceError(f"the PyTorch reference needs {error.name}: {INSTALL_HINT}") from None
    return torch, transformers


def torch_device(device: str) -> str:
    """`auto` -> cuda when torch sees a GPU, else cpu; `cuda` without a GPU is an error."""
    torch, _ = _import_torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ReferenceError("reference.device cuda: torch sees no CUDA GPU (use auto or cpu)")
    return device


def load_torch_model(model_dir: Path, dtype: str, device: str = "cpu") -> Any:
    """Our model directory as a transformers `Gemma3ForCausalLM` (eval mode) on `device`."""
    torch, transformers = _import_torch()
    config = read_json(Path(model_dir) / "config.json")
    if config.get("model_type") != GEMMA3_TEXT:
        raise ReferenceError(
            f"{model_dir}/config.json: model_type {config.get('model_type')!r}, the reference "
            f"loads {GEMMA3_TEXT!r} model directories (written by `gsm8k-eval fetch-model`)"
        )
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=getattr(torch, dtype)
    )
    return model.to(device).eval()


class _ChosenLogits:
    """A logits processor that records each step's greedy logit (the row maximum, float32)."""

    def __init__(self) -> None:
        self.steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps.append(scores.max(dim=-1).values.float().cpu())
        return scores

    def row(self, index: int) -> list[float]:
        return [float(step[index]) for step in self.steps]


class _StopSequences:
    """A stopping criterion: a row is done once its decoded continuation holds a stop sequence
    (rows are cut exactly afterwards by `stops.settle`)."""

    def __init__(self, stops: Sequence[str], decode: Callable[[list[int]], str], start: int):
        self.stops, self.decode, self.start = tuple(s for s in stops if s), decode, start

    def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
        import torch

        rows = input_ids[:, self.start :].tolist()
        done = [any(s in self.decode(row) for s in self.stops) for row in rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def torch_generate(
    model: Any,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_tokens: Sequence[int],
    stop_sequences: Sequence[str],
    decode: Callable[[list[int]], str],
    batch_size: int = 1,
    pad_id: int = 0,
) -> list[Any]:
    """Greedy `model.generate` over `prompts` (left-padded batches of `batch_size`), each row
    cut like the JAX samplers' (EOS kept, text cut before the first stop sequence)."""
    out: list[Any] = []
    for begin in range(0, len(prompts), batch_size):
        batch = prompts[begin : begin + batch_size]
        out += _generate_batch(
            model, batch, max_new_tokens, tuple(eos_tokens), stop_sequences, decode, pad_id
        )
    return out


def _generate_batch(
    model: Any,
    batch: list[list[int]],
    limit: int,
    eos: tuple[int, ...],
    stops: Sequence[str],
    decode: Callable[[list[int]], str],
    pad_id: int,
) -> list[Any]:
    torch, transformers = _import_torch()
    from gsm8k_eval.sampling.stops import settle

    width = max(len(p) for p in batch)
    device = model.device
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
    chosen = _ChosenLogits()
    config = transformers.GenerationConfig(
        do_sample=False,
        max_new_tokens=limit,
        eos_token_id=list(eos),
        pad_token_id=pad_id,
    )
    criteria = [_StopSequences(stops, decode, width)] if any(stops) else []
    with torch.inference_mode():
        generated = model.generate(
            input_ids=ids,
            attention_mask=mask,
            generation_config=config,
            logits_processor=transformers.LogitsProcessorList([chosen]),
            stopping_criteria=transformers.StoppingCriteriaList(criteria),
        )
    rows = []
    for index, row in enumerate(generated[:, width:].tolist()):
        tokens = _through_first_eos(row, eos)
        finished = settle(tokens, chosen.row(index)[: len(tokens)], limit, eos, stops, decode)
        if finished is None:
            raise RuntimeError(
                f"transformers stopped row {index} after {len(tokens)} tokens "
                "without an EOS, a stop sequence or the token budget"
            )
        rows.append(finished)
    return rows


def _through_first_eos(tokens: list[int], eos: tuple[int, ...]) -> list[int]:
    """Tokens up to and including the first EOS (transformers pads finished rows after it)."""
    for i, token in enumerate(tokens):
        if token in eos:
            return tokens[: i + 1]
    return tokens


# ------------------------------------------------------------------------ the stage


def run_reference(options: ReferenceOptions) -> Path:
    """Generate and write generations.jsonl and generation.json in `options.output_dir` (the
    `score` stage grades them into rollouts.jsonl and summary.json)."""
    _import_torch()  # fail fast, before any work, when torch is missing
    from gsm8k_eval.evaluation.rows import generation_row
    from gsm8k_eval.evaluation.workload import render_prompts
    from gsm8k_eval.sampling.types import check_lengths
    from gsm8k_eval.tokenizer import Tokenizer

    examples, prompts, stops = render_prompts(options)
    tokenizer = Tokenizer.from_dir(options.model_dir)
    prompt_ids = [tokenizer.encode(prompt) for prompt in prompts]
    check_lengths([len(p) for p in prompt_ids], options.max_prompt_length)
    device = torch_device(options.device)
    model = load_torch_model(options.model_dir, options.dtype, device)
    log.info("transformers greedy on %s (%s), %d prompts", device, options.dtype, len(prompts))
    started = time.perf_counter()
    generations = torch_generate(
        model,
        prompt_ids,
        max_new_tokens=options.max_generation_steps,
        eos_tokens=options.eos_tokens,
        stop_sequences=stops,
        decode=tokenizer.decode,
        batch_size=options.batch_size,
        pad_id=int(tokenizer.pad_id),
    )
    seconds = time.perf_counter() - started
    work = _Work(examples, prompts, prompt_ids, stops)
    rows = [generation_row(options, work, i, g) for i, g in enumerate(generations)]
    options.output_dir.mkdir(parents=True, exist_ok=True)
    out = options.output_dir / GENERATIONS
    write_jsonl(out, rows)
    record = _record(options, rows, seconds, device, stops)
    write_json(options.output_dir / GENERATION_RECORD, record)
    return out


def _record(
    options: ReferenceOptions,
    rows: list[dict[str, Any]],
    seconds: float,
    device: str,
    stops: Sequence[str],
) -> dict[str, Any]:
    """generation.json: summary.json's fields but the grading (added by `score`)."""
    total = len(rows)
    generated = sum(len(r["tokens"]) for r in rows)
    return {
        "checkpoint": options.checkpoint_name,
        "batch_size": options.batch_size,
        "framework": FRAMEWORK,
        "wall_seconds": seconds,
        "generated_tokens": generated,
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "tokens_per_second": generated / seconds if seconds else 0.0,
        "examples_per_second": total / seconds if seconds else 0.0,
        "sampler": "transformers-greedy",
        "dtype": options.dtype,
        "device": device,
        "temperature": 0,
        "max_generation_steps": options.max_generation_steps,
        "max_prompt_length": options.max_prompt_length,
        "eos_tokens": list(options.eos_tokens),
        "prompt_template": options.prompt_template,
        "num_shots": options.num_shots,
        "model_source": options.model_source,
        "dataset_sha256": dataset_sha256(options.dataset_manifest),
        "config_hash": options.config_hash,
        "versions": fingerprint.package_versions(VERSIONED_PACKAGES),
        "stop_sequences": list(stops),
    }
