"""The report's batch-dependence section (issue #13): samplers compared across batch sizes.

Constructed rollouts: the fixed sampler reproduces batch size 1 exactly at batch size 4; the
"tunix" runs diverge on six examples that were correct at batch size 1 (all flip to wrong) and
on one more that stays correct.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from report_expected import section, table_rows
from report_fixture import N, diverge, render, rollouts_for, write_tree

from gsm8k_eval.report.batch_dependence import MAX_EXAMPLES, batch_dependence
from gsm8k_eval.report.inputs import ReportInputs, load_runs

FLIPPED = (1, 2, 4, 5, 7, 8)  # correct at batch size 1 (base_correct), wrong at 4
STAYS_CORRECT = 10  # diverges after its answer: same answer, still correct


def _at(rows: list[dict], bs: int) -> list[dict]:
    return [dict(r, batch_size=bs) for r in rows]


def _tunix_rows() -> list[dict]:
    rows = _at(rollouts_for("base", 1), 4)
    for i in FLIPPED:
        rows[i] = diverge(rows[i], 10 + i, "ZZ so The answer is 1234.", correct=False)
        rows[i]["extracted_answer"] = "1234"
    end = len(rows[STAYS_CORRECT]["response"])
    rows[STAYS_CORRECT] = diverge(rows[STAYS_CORRECT], end, " Done.", correct=True)
    return rows


def _end() -> int:
    """Where the example that stays correct diverges: right after its response."""
    return len(rollouts_for("base", 1)[STAYS_CORRECT]["response"])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("samplers") / "results"
    base = rollouts_for("base", 1)
    write_tree(root, {("base", 1): base, ("base", 4): _at(base, 4)}, {"sampler": "fixed"})
    tunix = {("base", 1): base, ("base", 4): _tunix_rows()}
    write_tree(root, tunix, {"sampler": "tunix"}, checkpoints=False)
    return root


@pytest.fixture(scope="module")
def computed(results: Path):
    inputs = ReportInputs(
        eval_dirs=[results / "eval"],
        invariance_paths=[],
        checkpoint_manifests=[],
        dataset_manifest=None,
        config={},
        command="",
    )
    return batch_dependence(load_runs(inputs))


def test_one_comparison_per_checkpoint_and_sampler(computed) -> None:
    assert [
        (p.checkpoint, p.sampler, p.reference_batch_size, p.batch_size) for p in computed.pairs
    ] == [
        ("base", "fixed", 1, 4),
        ("base", "tunix", 1, 4),
    ]


def test_identical_outputs_change_nothing(computed) -> None:
    fixed = computed.pairs[0]
    assert (fixed.identical, fixed.total, fixed.changed, fixed.identical_rate) == (N, N, 0, 1.0)
    assert fixed.first_divergence is None and fixed.examples == []
    assert (fixed.flips, fixed.delta, fixed.mcnemar.p_value) == (0, 0.0, 1.0)


def test_flips_first_divergence_and_mcnemar(computed) -> None:
    tunix = computed.pairs[1]
    assert (tunix.identical, tunix.changed) == (N - 7, 7)
    assert tunix.flips == 6
    assert (tunix.comparison.flips_to_correct, tunix.comparison.flips_to_incorrect) == (0, 6)
    assert (tunix.mcnemar.b, tunix.mcnemar.c) == (6, 0)
    assert tunix.mcnemar.p_value == pytest.approx(2 * 0.5**6)  # exact two-sided binomial
    assert tunix.delta == pytest.approx(-6 / N)
    ks = sorted([10 + i for i in FLIPPED] + [_end()])
    stats = tunix.first_divergence
    assert (stats.count, stats.minimum, stats.median, stats.maximum) == (7, ks[0], ks[3], ks[-1])


def test_examples_are_the_earliest_flips_side_by_side(computed) -> None:
    examples = computed.pairs[1].examples
    assert [e.divergence.id for e in examples] == list(FLIPPED[:MAX_EXAMPLES])
    first = examples[0]
    ref = rollouts_for("base", 1)[FLIPPED[0]]
    k = 10 + FLIPPED[0]
    assert first.divergence.first_token_index == k
    assert (first.divergence.reference_token, first.divergence.other_token) == (
        ref["tokens"][k],
        ord("Z"),
    )
    assert first.divergence.reference_logit == ref["token_logits"][k]
    assert (first.gold, first.reference_answer, first.other_answer) == (
        ref["gold"],
        ref["extracted_answer"],
        "1234",
    )
    assert (first.divergence.reference_correct, first.divergence.other_correct) == (True, False)


def test_headline_is_computed_batch_dependent_sampler_first(computed) -> None:
    tunix, fixed = computed.headline
    assert (tunix.sampler, tunix.changed, tunix.total) == ("tunix", 7, N)
    assert tunix.answers_changed == len(FLIPPED)
    assert tunix.deltas == [("base", pytest.approx(-6 / N))]
    assert (fixed.sampler, fixed.changed, fixed.total) == ("fixed", 0, N)


def test_rendered_section_opens_the_report(results: Path) -> None:
    md = render(results, config={"samplers": ["fixed", "tunix"]})
    assert md.index("## Batch dependence") < md.index("## Summary results")
    sub = section(md, "## Batch dependence")
    headline = (
        f"**Headline:** the stock tunix sampler changed 7 of {N} outputs between bs=1 and bs=4 "
        f"(6 extracted answers changed, accuracy {100 * -6 / N:+.1f} pp); "
        f"the fixed sampler changed 0 of {N} outputs between bs=1 and bs=4."
    )
    assert headline in sub
    rows = table_rows(sub, "checkpoint", "sampler")
    assert [r[:4] for r in rows] == [
        ["base", "fixed", "1 vs 4", f"100.0% (20 of {N})"],
        ["base", "tunix", "1 vs 4", f"{100 * (N - 7) / N:.1f}% ({N - 7} of {N})"],
    ]
    assert rows[0][4:] == [
        "none",
        "65.0%",
        "65.0%",
        "+0.0 pp",
        "1.000 (McNemar exact)",
        "0 (0 / 0)",
    ]
    assert rows[1][4:] == [
        f"11 / 15 / {_end()}",
        "65.0%",
        "35.0%",
        "-30.0 pp",
        "0.031 (McNemar exact)",
        "6 (0 / 6)",
    ]
    examples = section(sub, "### base, stock tunix sampler: batch size 1 vs 4")
    assert [f"#### Example {i}" in examples for i in FLIPPED] == [True] * 3 + [False] * 3
    # Checkpoint comparisons and findings use the primary (first configured) sampler's runs.
    one = "**One checkpoint evaluated (base):** accuracy 65.0% with the fixed sampler at batch"
    assert f"{one} size 1, its smallest; all 4 runs are in the [summary results]" in md
    # each diverging example is shown once: the invariance section refers to it
    assert all(md.count(f"#### Example {i}\n") <= 1 for i in range(N))
    worst = " ".join(section(md, "### base (stock tunix sampler)").split())
    assert "continuations under [Batch dependence](#batch-dependence)" in worst
    inv = section(md, "## Batch invariance")
    assert "### base (fixed sampler)" in inv and "### base (stock tunix sampler)" in inv


def test_comparisons_are_read_from_the_invariance_output(results: Path, tmp_path: Path) -> None:
    """One source for every number (issue 23 §3): the report takes each pair's comparison from
    the invariance JSON, not from a second computation over the rollouts."""
    import json

    from gsm8k_eval.invariance import check_invariance

    inputs = ReportInputs(
        eval_dirs=[results / "eval"],
        invariance_paths=[],
        checkpoint_manifests=[],
        dataset_manifest=None,
        config={},
        command="",
    )
    runs = load_runs(inputs)
    out = tmp_path / "tunix.json"
    tunix = sorted(results.glob("eval/base/tunix/bs*/rollouts.jsonl"))
    sizes = {int(p.parent.name.removeprefix("bs")): p for p in tunix}
    data = check_invariance(sizes, out, checkpoint="base", sampler="tunix").to_dict()
    assert data["comparisons"][0]["identical_tokens"] == N - len(FLIPPED) - 1
    data["comparisons"][0]["identical_tokens"] = 3  # planted: only the file says so
    recorded = batch_dependence(runs, {("base", "tunix"): data})
    (pair,) = [p for p in recorded.pairs if p.sampler == "tunix"]
    assert pair.identical == 3
    (computed_pair,) = [p for p in batch_dependence(runs).pairs if p.sampler == "tunix"]
    assert computed_pair.identical == N - len(FLIPPED) - 1
    assert json.loads(out.read_text())["verdict"] == "batch-dependent"
