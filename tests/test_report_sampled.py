"""The report's sampled-evaluation section (issue 24): pass@k / maj@k table and figure,
computed from the rollouts; absent for greedy runs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest
from report_fixture import render as render_report
from report_fixture import rollouts_for, write_tree
from test_stats import hand_sign_flip

from gsm8k_eval.comparison import RolloutRecord
from gsm8k_eval.report.batch_dependence import paired_test
from gsm8k_eval.report.inputs import Run
from gsm8k_eval.report.tables import paired_comparison
from gsm8k_eval.stats import mcnemar_exact

SETTINGS = {"temperature": 0.7, "top_k": 0, "top_p": 1.0, "sampling_seed": 0, "num_samples": 2}


def sampled(rows: list[dict]) -> list[dict]:
    """Two samples per question: sample 0 as in the fixture, sample 1 a wrong other answer."""
    out = []
    for row in rows:
        wrong = dict(row, extracted_answer=f"wrong{row['id']}", correct=False)
        out += [dict(row, sample_index=0, **SETTINGS), dict(wrong, sample_index=1, **SETTINGS)]
    return out


def test_sampled_section_table_and_figure(tmp_path):
    root = tmp_path / "results"
    base = rollouts_for("base", 1)
    write_tree(root, {("base", 1): sampled(base), ("base", 4): sampled(rollouts_for("base", 4))})
    text = render_report(root)
    assert "## Sampled evaluation: pass@k and maj@k" in text
    assert (tmp_path / "report" / "figures" / "sampled.png").stat().st_size > 0
    section = text.split("### base (fixed, bs 1)")[1].split("###")[0]
    assert "20 questions × 2 samples; temperature 0.7" in section
    right = sum(r["correct"] for r in base) / len(base)
    # pass@1 averages the samples (sample 1 always wrong); pass@2 and maj@2 (tie: sample 0's
    # answer, seen first) are sample 0's accuracy
    k1 = re.search(r"^\| 1 \| ([\d.]+)% \|.*\| ([\d.]+)% \|", section, re.M)
    k2 = re.search(r"^\| 2 \| ([\d.]+)% \|.*\| ([\d.]+)% \|", section, re.M)
    assert float(k1.group(1)) == round(100 * right / 2, 1)
    assert float(k1.group(2)) == round(100 * right, 1)
    assert (float(k2.group(1)), float(k2.group(2))) == (round(100 * right, 1),) * 2


def test_two_sampled_checkpoints_are_paired_question_by_question(tmp_path):
    root = tmp_path / "results"
    runs = {(c, 1): sampled(rollouts_for(c, 1)) for c in ("base", "lora_final")}
    write_tree(root, runs)
    text = render_report(root)
    assert "### lora_final (fixed, bs 1)" in text
    assert "on 20 paired questions (2 samples each)" in text, text.split("##")[3][:800]
    assert "sign-flip permutation p = " in text and "Sampled runs are paired by question" in text
    assert "McNemar exact p" not in text


def run_of(name: str, correct: list[list[bool]]) -> Run:
    """A sampled run: question q's samples graded `correct[q]` (greedy: one flag, no index)."""
    rows = [
        {"id": q, "question": f"question {q}", "correct": c}
        | ({"sample_index": i} if len(flags) > 1 else {})
        for q, flags in enumerate(correct)
        for i, c in enumerate(flags)
    ]
    return Run(name, 1, {}, pd.DataFrame(rows), Path("summary.json"), Path("rollouts.jsonl"))


def test_sampled_comparison_counts_each_question_once():
    """3 of 12 questions go from 0/4 to 4/4 samples right: 12 discordant samples (sample-level
    McNemar p = 2 / 2^12), but 3 questions: all 2^3 sign flips give p = 2/8. Question 3 goes
    from 1/4 to 2/4 (improved), question 4 from 3/4 to 1/4 (worse); 7 stay the same."""
    same = [[True, False, True, True]] * 7
    wrong, right = [[False] * 4] * 3, [[True] * 4] * 3
    base = run_of("base", [*wrong, [True, False, False, False], [True, True, True, False], *same])
    other = run_of("lora", [*right, [True, True, False, False], [False, False, False, True], *same])
    c = paired_comparison(base, other)
    assert (c.paired, c.samples, c.unit) == (12, 4, "questions")
    assert [e.id for e in c.fixed] == [0, 1, 2, 3] and [e.id for e in c.broken] == [4]
    assert c.delta == pytest.approx((3 * 4 + 1 - 2) / 48)
    assert c.p_value == pytest.approx(hand_sign_flip([1, 1, 1, 0.25, -0.5]), rel=1e-12)
    assert c.test_name.startswith("paired sign-flip") and c.changes == ("improved", "worse")
    assert c.bootstrap.low <= c.delta <= c.bootstrap.high


def test_greedy_comparison_is_still_mcnemar():
    base, other = (run_of(n, [[f] for f in flags]) for n, flags in GREEDY.items())
    assert "sample_index" not in base.rollouts
    c = paired_comparison(base, other)
    assert (c.paired, c.samples, c.unit, c.changes) == (8, None, "examples", ("fixed", "broken"))
    assert c.p_value == pytest.approx(mcnemar_exact(*GREEDY.values()).p_value)


GREEDY = {"base": [True, False, False, False, True, True, False, True], "lora": [True] * 8}


def test_greedy_report_has_no_sampled_section(tmp_path):
    root = tmp_path / "results"
    write_tree(root, {("base", 1): rollouts_for("base", 1)})
    text = render_report(root)
    assert "Sampled evaluation" not in text
    assert not (tmp_path / "report" / "figures" / "sampled.png").exists()


def _records(correct: list[list[bool]]) -> dict:
    """RolloutRecords of a sampled run keyed as the comparison keys them: (id, sample index)."""
    return {
        (q, i): RolloutRecord(q, f"question {q}", "", (1,), (), c, sample_index=i)
        for q, flags in enumerate(correct)
        for i, c in enumerate(flags)
    }


def test_batch_dependence_of_sampled_runs_is_tested_per_question():
    """The batch-dependence p-value of a sampled pair is the sign-flip test over questions
    (the same numbers as test_sampled_comparison_counts_each_question_once); greedy keeps
    McNemar."""
    same = [[True, False, True, True]] * 7
    wrong, right = [[False] * 4] * 3, [[True] * 4] * 3
    ref = _records([*wrong, [True, False, False, False], [True, True, True, False], *same])
    oth = _records([*right, [True, True, False, False], [False, False, False, True], *same])
    ids = sorted(ref)
    mcnemar = mcnemar_exact([ref[i].correct for i in ids], [oth[i].correct for i in ids])
    p, test = paired_test(ref, oth, mcnemar)
    assert test == "sign-flip permutation"
    assert p == pytest.approx(hand_sign_flip([1, 1, 1, 0.25, -0.5]), rel=1e-12) != mcnemar.p_value
    greedy = {q: dataclasses.replace(r, sample_index=None) for (q, i), r in ref.items() if i == 0}
    assert paired_test(greedy, greedy, mcnemar) == (mcnemar.p_value, "McNemar exact")


def test_sampled_batch_dependence_table_names_its_test(tmp_path):
    root = tmp_path / "results"
    write_tree(root, {("base", bs): sampled(rollouts_for("base", bs)) for bs in (1, 4)})
    section = render_report(root).split("## Batch dependence")[1].split("\n## ")[0]
    assert "| p (test) |" in section and "(sign-flip permutation) |" in section
    assert "(McNemar exact) |" not in section
