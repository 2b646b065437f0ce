"""The report's sweep section and compilation-cache note, from planted rollouts."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gsm8k_eval.report.render import render_report_from_results
from gsm8k_eval.report.sweeps import holm_adjust
from gsm8k_eval.stats import mcnemar_exact, wilson_interval

N = 40
BASE_CORRECT = set(range(0, 40, 4))  # 10 of 40
STEP_CORRECT = {  # step -> correct ids: step 200 is best (base's 10 plus 12 more)
    100: BASE_CORRECT | set(range(1, 12, 2)),
    200: BASE_CORRECT | set(range(1, 24, 2)),
    300: BASE_CORRECT - {0, 4},
}
CACHE = {"dir": "/x/jax-cache", "hits": 5, "misses": 2, "compile_seconds_saved": 1.25}


def _write_run(root: Path, checkpoint: str, correct: set[int], cache: dict | None) -> None:
    folder = root / "eval" / checkpoint / "bs1"
    folder.mkdir(parents=True)
    rows = [
        {
            "id": i,
            "question": f"question {i}",
            "correct": i in correct,
            "correct_by_method": {"strict": i in correct},
        }
        for i in range(N)
    ]
    (folder / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"checkpoint": checkpoint, "batch_size": 1, "correct": len(correct), "total": N}
    summary.update({"compile_seconds": 2.0, "compilation_cache": cache})
    (folder / "summary.json").write_text(json.dumps(summary))


def _render(tmp_path: Path, sweep: bool, cache: dict | None = None) -> str:
    results = tmp_path / "results"
    _write_run(results, "base", BASE_CORRECT, cache)
    for step, correct in STEP_CORRECT.items():
        _write_run(results, f"run-step{step}", correct, cache)
    entry = {"name": "run", "source": "gs://b/actor"}
    entry.update({"every": 100} if sweep else {"step": 100})
    config = {"checkpoints": [{"name": "base", "source": "base"}, entry]}
    out = tmp_path / "report" / "report.md"
    render_report_from_results(results, out, config, "snakemake")
    return out.read_text()


def _flags(correct: set[int]) -> list[bool]:
    return [i in correct for i in range(N)]


def test_sweep_section_shows_every_step_the_best_and_its_adjusted_comparison(tmp_path):
    text = _render(tmp_path, sweep=True)
    section = text.split("## Accuracy across training steps", 1)[1].split("\n## ", 1)[0]
    assert "![Accuracy by training step](figures/sweeps.png)" in section
    assert (tmp_path / "report" / "figures" / "sweeps.png").stat().st_size > 0
    rows = [line for line in section.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["100", "200", "300"]
    p_values = [
        mcnemar_exact(_flags(BASE_CORRECT), _flags(STEP_CORRECT[s])).p_value
        for s in (100, 200, 300)
    ]
    for row, step in zip(rows, (100, 200, 300), strict=True):
        interval = wilson_interval(len(STEP_CORRECT[step]), N)
        assert f"{100 * len(STEP_CORRECT[step]) / N:.1f}%" in row
        assert f"[{100 * interval.low:.1f}%, {100 * interval.high:.1f}%]" in row
    assert "Best step: **200** (run-step200), accuracy 55.0% at batch size 1." in section
    assert "25.0% → 55.0% (+30.0 pp), 12 fixed, 0 broken" in section
    holm = holm_adjust(p_values)[1]
    assert holm == min(1.0, 3 * p_values[1])  # the smallest p: Holm = Bonferroni
    shown = "< 0.001" if holm < 0.001 else f"{holm:.3f}"
    assert f"Holm-adjusted over the 3 comparisons (Holm–Bonferroni), p = {shown}" in section


def test_no_sweep_no_section(tmp_path):
    text = _render(tmp_path, sweep=False)
    assert "Accuracy across training steps" not in text
    assert not (tmp_path / "report" / "figures" / "sweeps.png").exists()
    assert "compilation cache" not in text


def test_holm_adjustment_is_monotone_and_capped():
    assert holm_adjust([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm_adjust([0.5, 0.9]) == [1.0, 1.0]


def test_compile_cache_savings_are_reported(tmp_path):
    text = _render(tmp_path, sweep=True, cache=CACHE)
    runs = 1 + len(STEP_CORRECT)
    assert (
        f"{5 * runs} programs were loaded from it instead of compiled ({2 * runs} compiled and "
        f"stored), saving at least {1.25 * runs:.1f} s of compilation (JAX's estimate, from "
        f"compile times it stores in whole seconds); {2.0 * runs:.1f} s"
    ) in " ".join(text.split())
