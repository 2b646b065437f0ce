"""Snakemake: changing a checkpoint's step reruns `evaluate` and yields the new step's rollouts
(its shards survive Snakemake's rerun, so they must not be reused) — issue 11 §1."""

from __future__ import annotations

import json
from pathlib import Path

from lora_checkpoints import LORA, save_lora_steps
from pipeline_helpers import run_snakemake, tiny_config, write_config


def _one(workdir: Path, pattern: str) -> Path:
    found = sorted(workdir.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def _tokens(path: Path) -> list[list[int]]:
    return [json.loads(line)["tokens"] for line in path.read_text().splitlines()]


def test_changing_the_checkpoint_step_reruns_evaluate(tmp_path):
    from gsm8k_eval.models import fetch_model

    model = fetch_model("random:tiny", tmp_path / "tiny-model")
    actor = save_lora_steps(model, tmp_path / "trainer" / "actor", {5: 0, 10: 1})
    workdir = tmp_path / "run"
    workdir.mkdir()

    def run(step: int) -> tuple[list[list[int]], dict]:
        config = tiny_config(
            checkpoints=[{"name": "ft", "source": str(actor), "step": step}],
            lora=LORA,
            batch_sizes=[2],
            limit=2,
        )
        run_snakemake(workdir, write_config(workdir, config))
        rollouts = _one(workdir, "results/**/eval/ft/fixed/bs*/rollouts.jsonl")
        summary = json.loads((rollouts.parent / "summary.json").read_text())
        return _tokens(rollouts), summary

    step5, summary5 = run(5)
    assert summary5["checkpoint_manifest"]["step"] == 5
    step10, summary10 = run(10)
    assert summary10["checkpoint_manifest"]["step"] == 10
    assert summary10["resumed_shards"] == 0
    assert step10 != step5, "the rerun reused the step-5 rollouts"
    assert (
        summary10["fingerprint"]["checkpoint_sha256"]
        != summary5["fingerprint"]["checkpoint_sha256"]
    )
