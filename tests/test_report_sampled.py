"""The report's sampled-evaluation section (issue 24): pass@k / maj@k table and figure,
computed from the rollouts; absent for greedy runs."""

from __future__ import annotations

import re

from report_fixture import render as render_report
from report_fixture import rollouts_for, write_tree

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


def test_two_sampled_checkpoints_are_paired_sample_by_sample(tmp_path):
    root = tmp_path / "results"
    runs = {(c, 1): sampled(rollouts_for(c, 1)) for c in ("base", "lora_final")}
    write_tree(root, runs)
    text = render_report(root)
    assert "### lora_final (fixed, bs 1)" in text
    assert re.search(r"on 40 paired examples", text), text.split("##")[3][:800]


def test_greedy_report_has_no_sampled_section(tmp_path):
    root = tmp_path / "results"
    write_tree(root, {("base", 1): rollouts_for("base", 1)})
    text = render_report(root)
    assert "Sampled evaluation" not in text
    assert not (tmp_path / "report" / "figures" / "sampled.png").exists()
