"""Spot checks (issue 22): a batch size evaluated on the first N examples only is compared with
the full run on those N examples, and every output says "spot check: N of M examples"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_invariance import diverge, make_rows, write

from gsm8k_eval.invariance import RolloutMismatchError, check_invariance
from gsm8k_eval.verdict import VerdictError, verdict

SPOT = 3  # of the 6 examples of make_rows()


def _spot(tmp_path: Path, rows, *, full=None) -> tuple[dict, Path]:
    """Full run at bs 4 (`full`, default `rows`), spot check of the first SPOT rows at bs 1."""
    out = tmp_path / "fixed.json"
    check_invariance(
        {4: write(tmp_path / "full", 4, full or make_rows())},
        out,
        checkpoint="base",
        sampler="fixed",
        spot_checks={1: write(tmp_path / "spot", 1, rows[:SPOT])},
    )
    return json.loads(out.read_text()), out


def test_identical_spot_check_is_invariant_and_says_its_scope(tmp_path: Path) -> None:
    data, _ = _spot(tmp_path, make_rows())
    assert data["invariant"] is True and data["verdict"] == "invariant"
    assert (data["batch_sizes"], data["spot_check_batch_sizes"]) == ([4], [1])
    assert data["num_examples"] == 6  # the full run's
    (c,) = data["comparisons"]
    assert (c["reference_batch_size"], c["batch_size"]) == (4, 1)
    assert (c["spot_check"], c["num_examples"], c["full_examples"]) == (True, SPOT, 6)
    assert c["scope"] == "spot check: 3 of 6 examples"
    assert "spot check: 3 of 6 examples" in data["message"]


def test_spot_accuracies_are_both_on_the_shared_examples(tmp_path: Path) -> None:
    # make_rows: even ids correct -> the full run is 3/6, its first three 2/3.
    data, _ = _spot(tmp_path, make_rows())
    (c,) = data["comparisons"]
    assert (c["reference_correct"], c["correct"]) == (2, 2)
    assert c["reference_accuracy"] == pytest.approx(2 / 3)  # not the full run's 0.5
    assert c["accuracy_delta"] == 0


def test_a_diverging_spot_check_fails_the_verdict_naming_its_scope(tmp_path: Path) -> None:
    rows = make_rows()
    rows[1] = diverge(rows[1], 5, "XYZ", 3.0, correct=True)
    data, path = _spot(tmp_path, rows)
    (c,) = data["comparisons"]
    assert data["invariant"] is False and c["token_divergences"] == 1
    assert (c["correctness_flips"], c["reference_correct"], c["correct"]) == (1, 2, 3)
    assert data["message"].startswith("batch size 1 (spot check: 3 of 6 examples): 1 of 3")
    with pytest.raises(VerdictError, match=r"spot check: 3 of 6 examples"):
        verdict([path], tmp_path / "verdict.json")
    check = json.loads((tmp_path / "verdict.json").read_text())["checks"][0]
    assert check["spot_checks"] == ["batch size 1: spot check: 3 of 6 examples"]


def test_divergence_outside_the_spot_examples_is_not_seen(tmp_path: Path) -> None:
    """The full run's later examples are not compared (the spot check covers 3 of 6)."""
    full = make_rows()
    full[5] = diverge(full[5], 2, "QQ", 1.0, correct=False)
    data, _ = _spot(tmp_path, make_rows(), full=full)
    assert data["invariant"] is True
    assert data["comparisons"][0]["num_examples"] == SPOT


def test_spot_ids_must_be_the_full_runs(tmp_path: Path) -> None:
    foreign = [type(r)(r.id + 100, r.response, r.logits, r.correct) for r in make_rows()]
    with pytest.raises(RolloutMismatchError, match="ids the full run lacks"):
        _spot(tmp_path, foreign)


def test_full_comparisons_keep_their_old_fields(tmp_path: Path) -> None:
    rows = make_rows()
    out = tmp_path / "inv.json"
    check_invariance(
        {1: write(tmp_path, 1, rows), 2: write(tmp_path, 2, rows)}, out, checkpoint="base"
    )
    data = json.loads(out.read_text())
    (c,) = data["comparisons"]
    assert (c["spot_check"], c["full_examples"], c["scope"]) == (False, None, "all 6 examples")
    assert data["spot_check_batch_sizes"] == []
    assert data["message"] == (
        "all batch sizes produced identical tokens and float32 logit bits for every example"
    )


# --- the plan: which evaluations and comparisons a config makes ---------------------------------

STUDY = {
    "samplers": ["fixed", "tunix"],
    "batch_sizes": {"fixed": [32], "tunix": [32, 1]},
    "spot_check": {"examples": 64},
    "checkpoints": [{"name": "base"}],
}


def _plan(config: dict):
    from gsm8k_eval.config import load_config
    from gsm8k_eval.targets import RunPaths

    return load_config(json.loads(json.dumps(config))), RunPaths("study")


def test_batch_sizes_per_sampler_and_a_spot_check_for_the_sampler_lacking_its_size() -> None:
    cfg, paths = _plan(STUDY)
    assert (cfg.batch_sizes_for("fixed"), cfg.batch_sizes_for("tunix")) == ((32,), (1, 32))
    assert cfg.batch_sizes == (1, 32)  # every batch size of any sampler
    assert paths.all_summaries(cfg) == [
        "results/study/eval/base/fixed/bs32/summary.json",
        "results/study/eval/base/tunix/bs1/summary.json",
        "results/study/eval/base/tunix/bs32/summary.json",
    ]
    # fixed lacks bs 1: a spot check; tunix has bs 1: none.
    assert paths.spot_rollouts(cfg, "base", "fixed") == [
        "results/study/spot/base/fixed/bs1/rollouts.jsonl"
    ]
    assert paths.spot_rollouts(cfg, "base", "tunix") == []
    assert paths.rollouts_argument(cfg, "base", "fixed") == (
        "32=results/study/eval/base/fixed/bs32/rollouts.jsonl"
    )
    assert paths.spot_argument(cfg, "base", "fixed") == (
        "--spot-check 1=results/study/spot/base/fixed/bs1/rollouts.jsonl"
    )
    assert paths.spot_argument(cfg, "base", "tunix") == ""


def test_the_spot_check_evaluates_the_first_examples_with_the_evaluations_flags() -> None:
    from gsm8k_eval import targets

    cfg, paths = _plan(STUDY)
    full, spot = paths.evaluate_arguments(cfg), targets.spot_check_arguments(paths, cfg)
    assert "--limit" not in full and spot == f"{full} --limit 64"
    # with a limit, never more examples than the full run has
    cfg, paths = _plan({**STUDY, "limit": 8})
    assert targets.spot_check_arguments(paths, cfg).endswith("--limit 8")
    assert cfg.spot_check_examples == 8


def test_a_plain_list_and_no_spot_check_plan_as_before() -> None:
    cfg, paths = _plan({"samplers": ["fixed", "tunix"], "batch_sizes": [8, 1]})
    assert cfg.batch_sizes_for("tunix") == cfg.batch_sizes == (1, 8)
    assert len(paths.all_summaries(cfg)) == 4
    assert paths.spot_rollouts(cfg, "base", "fixed") == []
    # a spot check at a batch size every sampler has: nothing to add
    cfg, paths = _plan({"batch_sizes": [1, 8], "spot_check": {"examples": 16}})
    assert paths.spot_rollouts(cfg, "base", "fixed") == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"samplers": ["fixed", "tunix"], "batch_sizes": {"fixed": [32]}},
            "batch_sizes: no batch sizes for sampler 'tunix' (samplers lists it)",
        ),
        (
            {"batch_sizes": {"fixed": [32], "static": [8]}},
            "batch_sizes.static: sampler 'static' is not in samplers (fixed)",
        ),
        ({"batch_sizes": {"fixd": [32]}}, "batch_sizes.fixd: unknown key; did you mean 'fixed'?"),
        ({"batch_sizes": {"fixed": [0]}}, "batch_sizes.fixed[0]: 0 is less than the minimum 1"),
        ({"spot_check": {"examples": 0}}, "spot_check.examples: 0 is less than the minimum 1"),
        ({"spot_check": {"exampels": 8}}, "spot_check.exampels: unknown key; did you mean"),
    ],
)
def test_wrong_per_sampler_inputs_are_one_line_naming_the_key(config, expected) -> None:
    from gsm8k_eval import validation

    lines = validation.config_errors(config)
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_command_line_overrides_are_coerced_per_sampler() -> None:
    from gsm8k_eval import schema

    config = {"batch_sizes": {"fixed": ["32"], "tunix": ["1", "32"]}, "spot_check": "{examples: 8}"}
    schema.coerce(config)
    assert config == {
        "batch_sizes": {"fixed": [32], "tunix": [1, 32]},
        "spot_check": {"examples": 8},
    }
    assert schema.coerce({"batch_sizes": ["1", "8"]}) == {"batch_sizes": [1, 8]}


# --- the report --------------------------------------------------------------------------------


def test_report_labels_the_spot_check_and_keeps_it_out_of_the_accuracy_table(tmp_path) -> None:
    from report_fixture import N, render, rollouts_for, write_tree

    root = tmp_path / "results"
    full = rollouts_for("base", 4)
    write_tree(root, {("base", 4): full})
    spot_path = root / "spot" / "base" / "fixed" / "bs1" / "rollouts.jsonl"
    spot_path.parent.mkdir(parents=True)
    spot_path.write_text("".join(json.dumps({**r, "batch_size": 1}) + "\n" for r in full[:5]))
    check_invariance(
        {4: root / "eval" / "base" / "fixed" / "bs4" / "rollouts.jsonl"},
        root / "invariance" / "base" / "fixed.json",
        checkpoint="base",
        sampler="fixed",
        spot_checks={1: spot_path},
    )
    text = render(root)
    scope = f"spot check: 5 of {N} examples"
    assert f"identical tokens for every example compared (batch size 1: {scope})" in text
    assert f"| 4 vs 1 | 5 of {N} (spot check) |" in text
    assert f"only the first 5 of the {N} examples were evaluated at it" in text
    assert f"spot checks (base (fixed) at batch size 1: {scope})" in text  # the finding
    summary = text.split("## Summary results", 1)[1].split("\n## ", 1)[0]
    assert "| base | fixed | 4 |" in summary and "| base | fixed | 1 |" not in summary


# --- end to end on the tiny model ---------------------------------------------------------------


@pytest.mark.slow
def test_tiny_pipeline_runs_the_spot_check_and_reports_it(tmp_path) -> None:
    """fixed at bs 4 on 6 examples, its bs 1 spot check on the first 3: the rule, its grading,
    the comparison on the shared examples, the report and the verdict, through Snakemake."""
    from pipeline_helpers import run_root, run_snakemake, tiny_config, write_config

    config = tiny_config(batch_sizes={"fixed": [4]}, spot_check={"examples": 3, "batch_size": 1})
    run_snakemake(tmp_path, write_config(tmp_path, config))
    root = run_root(tmp_path)
    spot = [json.loads(line) for line in (root / "spot/base/fixed/bs1/rollouts.jsonl").open()]
    assert [r["id"] for r in spot] == [0, 1, 2] and {r["batch_size"] for r in spot} == {1}
    assert not (root / "eval/base/fixed/bs1").exists()
    full = [json.loads(line) for line in (root / "eval/base/fixed/bs4/rollouts.jsonl").open()]
    assert [r["tokens"] for r in spot] == [r["tokens"] for r in full[:3]]
    invariance = json.loads((root / "invariance/base/fixed.json").read_text())
    assert (invariance["invariant"], invariance["spot_check_batch_sizes"]) == (True, [1])
    assert invariance["comparisons"][0]["scope"] == "spot check: 3 of 6 examples"
    report = (root / "report/gsm8k_eval_report.md").read_text()
    assert "| 4 vs 1 | 3 of 6 (spot check) |" in report
    assert json.loads((root / "verdict.json").read_text())["checks"][0]["spot_checks"] == [
        "batch size 1: spot check: 3 of 6 examples"
    ]
