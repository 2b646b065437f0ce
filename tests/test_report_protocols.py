"""Protocols side by side (issue 22): `gsm8k-eval compare-protocols` puts several runs (one
protocol each) in one table; every number is computed from hand-built rollouts here."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
from pathlib import Path

import pytest

from gsm8k_eval.cli import main
from gsm8k_eval.report.inputs import DEFAULT_TEMPLATE_DIR, ReportDataError
from gsm8k_eval.report.protocols import protocol_table, render_protocols

N = 20
# run -> (template, shots, primary, stops, max new tokens)
PROTOCOLS = {
    "chat-strict": ("chat", 0, "strict", ["<end_of_turn>"], 768),
    "tunix-grpo": ("tunix_grpo", 0, "answer", [], 768),
    "lm-eval": ("fewshot", 5, "strict-match", ["Question:", "</s>", "<|im_end|>"], 256),
}
# (run, checkpoint, sampler, batch size) -> correct of N; tunix bs 1 is missing in lm-eval
CORRECT = {
    ("chat-strict", "base", "fixed", 32): 11,
    ("chat-strict", "base", "tunix", 1): 12,
    ("chat-strict", "base", "tunix", 32): 10,
    ("chat-strict", "grpo", "fixed", 32): 14,
    ("tunix-grpo", "base", "fixed", 32): 6,
    ("tunix-grpo", "base", "tunix", 1): 7,
    ("tunix-grpo", "base", "tunix", 32): 7,
    ("tunix-grpo", "grpo", "fixed", 32): 17,
    ("lm-eval", "base", "fixed", 32): 13,
    ("lm-eval", "base", "tunix", 32): 13,
    ("lm-eval", "grpo", "fixed", 32): 9,
}


def _write(folder: Path, run: str, checkpoint: str, sampler: str, bs: int, correct: int) -> None:
    template, shots, primary, stops, steps = PROTOCOLS[run]
    folder.mkdir(parents=True)
    rows = [
        {"id": i, "question": f"q{i}", "correct": i < correct, "correct_by_method": {}}
        for i in range(N)
    ]
    (folder / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "checkpoint": checkpoint,
        "sampler": sampler,
        "batch_size": bs,
        "correct": correct,
        "total": N,
        "prompt_template": template,
        "num_shots": shots,
        "primary_method": primary,
        "stop_sequences": stops,
        "max_generation_steps": steps,
        "model_source": "hf:google/gemma-3-1b-it",
        "dtype": "bfloat16",
    }
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    for (run, checkpoint, sampler, bs), correct in CORRECT.items():
        folder = tmp_path / run / "eval" / checkpoint / sampler / f"bs{bs}"
        _write(folder, run, checkpoint, sampler, bs, correct)
    # a spot check (first examples only) is not an evaluation of the whole set: never listed
    spot = tmp_path / "chat-strict" / "spot" / "base" / "fixed" / "bs1"
    _write(spot, "chat-strict", "base", "fixed", 1, 3)
    # the PyTorch reference of the chat protocol
    _write(tmp_path / "chat-strict" / "reference" / "base", "chat-strict", "base", "torch", 1, 9)
    return [tmp_path / run for run in PROTOCOLS]


def _stderr(correct: int) -> float:
    """lm-eval's exact_match_stderr: sample standard deviation / sqrt(n)."""
    return statistics.stdev([1.0] * correct + [0.0] * (N - correct)) / math.sqrt(N)


def _cell(correct: int | None) -> str:
    if correct is None:
        return "—"
    return f"{100 * correct / N:.1f}% ± {100 * _stderr(correct):.1f}% (n = {N})"


def test_table_has_a_column_per_protocol_and_a_row_per_evaluation(runs) -> None:
    table = protocol_table(runs)
    assert [p.label for p in table.protocols] == list(PROTOCOLS)
    assert [p.metric for p in table.protocols] == ["strict", "answer", "exact_match,strict-match"]
    assert [p.shots for p in table.protocols] == [0, 0, 5]
    keys = [(r.checkpoint, r.sampler, r.batch_size) for r in table.rows]
    assert keys == [
        ("base", "fixed", 32),
        ("base", "tunix", 1),
        ("base", "tunix", 32),
        ("grpo", "fixed", 32),
        ("base", "PyTorch reference", None),
    ]
    for row in table.rows[:-1]:
        for run, cell in zip(PROTOCOLS, row.cells, strict=True):
            expected = CORRECT.get((run, row.checkpoint, row.sampler, row.batch_size))
            assert (cell.correct if cell else None) == expected, (run, row)
            if cell:
                assert cell.stderr == pytest.approx(_stderr(expected))
    assert [c.correct if c else None for c in table.rows[-1].cells] == [9, None, None]
    assert table.differences == []


def test_rendered_markdown_shows_protocols_side_by_side(runs, tmp_path) -> None:
    out = tmp_path / "protocols.md"
    assert main(["compare-protocols", "--runs", *map(str, runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| checkpoint | sampler | batch size | chat-strict | tunix-grpo | lm-eval |" in text
    for checkpoint, sampler, bs in [
        ("base", "fixed", 32),
        ("base", "tunix", 1),
        ("grpo", "fixed", 32),
    ]:
        cells = [_cell(CORRECT.get((run, checkpoint, sampler, bs))) for run in PROTOCOLS]
        assert f"| {checkpoint} | {sampler} | {bs} | {' | '.join(cells)} |" in text
    assert "`exact_match,strict-match`" in text
    assert '`"Question:"`, `"</s>"`, `"<\\|im_end\\|>"`' in text  # lm-eval's stops, as written
    assert "| base | PyTorch reference | its own | " + _cell(9) + " | — | — |" in text
    assert "Not the same in every run" not in text


def test_runs_differing_besides_the_protocol_are_flagged(runs) -> None:
    path = runs[1] / "eval" / "base" / "fixed" / "bs32" / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, "dtype": "float32"}))
    table = protocol_table(runs, labels=["a", "b", "c"])
    assert [p.label for p in table.protocols] == ["a", "b", "c"]
    assert table.differences == [("dtype", ["bfloat16", "bfloat16, float32", "bfloat16"])]


def test_a_run_mixing_protocols_is_an_error(runs) -> None:
    path = runs[0] / "eval" / "grpo" / "fixed" / "bs32" / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "prompt_template": "fewshot"}))
    with pytest.raises(ReportDataError, match="disagree on prompt_template"):
        protocol_table(runs)


NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _unexplained(text: str) -> list[str]:
    """Numbers in the page that are not recomputed here (run names and metric names masked)."""
    allowed = {str(N), "3", "32", "1", "0", "5", "768", "256"}  # runs, batch sizes, shots, tokens
    for correct in [*CORRECT.values(), 9]:
        allowed |= set(NUMBER.findall(_cell(correct)))
    for mask in ["<end_of_turn>", "exact_match_stderr", "GSM8K", "gsm8k"]:
        text = text.replace(mask, " ")
    return [n for n in NUMBER.findall(text) if n not in allowed]


def test_every_number_is_recomputed_and_a_hard_coded_one_is_caught(runs, tmp_path) -> None:
    text = render_protocols(runs, tmp_path / "p.md").read_text()
    assert _unexplained(text) == [] and len(NUMBER.findall(text)) > 40
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATE_DIR, templates)
    page = templates / "protocols.md.j2"
    page.write_text(page.read_text() + "\nlm-eval reports 61.3% for this model.\n")
    text = render_protocols(runs, tmp_path / "p2.md", template_dir=templates).read_text()
    assert _unexplained(text) == ["61.3"]
