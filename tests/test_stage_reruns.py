"""Snakemake: each stage reruns by its own code and config (issue 23 §1-§3), on one finished
tiny run in a copy of the repository (whose modules the tests edit).

- Changing `scoring.primary` replans score, check_invariance, render_report (and the verdict)
  only, never generation; the regraded summaries equal a fresh run's.
- Editing one module a stage imports replans exactly that stage and its dependents.
- A planted one-bit logit difference fails the run in its last stage, after the report, with a
  one-line reason (a warning with `invariance.fail_on_divergence: false`).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from collections import Counter
from pathlib import Path

import pytest
from pipeline_helpers import REPO, run_root, run_snakemake, tiny_config, write_config

from gsm8k_eval import codegraph
from gsm8k_eval.gather import JOB_FIELDS

# Rule -> the subcommand it runs.
RULES = {
    "download_dataset": "download-dataset",
    "fetch_model": "fetch-model",
    "fetch_checkpoint": "fetch-checkpoint",
    "evaluate": "evaluate",
    "score": "score",
    "check_invariance": "check-invariance",
    "export_lm_eval": "export-lm-eval",
    "render_report": "render-report",
    "verdict": "verdict",
}
# Rule -> the rules that take its outputs as inputs (the DAG of the tiny run).
CONSUMERS = {
    "download_dataset": ("evaluate", "export_lm_eval", "render_report"),
    "fetch_model": ("evaluate",),
    "fetch_checkpoint": ("evaluate",),
    "evaluate": ("score",),
    "score": ("check_invariance", "export_lm_eval", "render_report"),
    "check_invariance": ("render_report",),
    "export_lm_eval": (),
    "render_report": ("verdict",),
    "verdict": (),
}


def _dependents(rule: str) -> set[str]:
    found: set[str] = set()
    todo = list(CONSUMERS[rule])
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += CONSUMERS[name]
    return found | {"all"}


def _planned(result) -> Counter:
    """Rule -> job count from a dry run's "Job stats" table."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return Counter()
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)})


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(repository copy, work folder of a finished tiny run with it, its config file)."""
    root = tmp_path_factory.mktemp("stage-reruns")
    repo = root / "repo"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("Snakefile", "config.yaml", "workflow", "report", "envs"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        else:
            shutil.copy2(source, repo / name)
    workdir = root / "run"
    workdir.mkdir()
    config = write_config(workdir, tiny_config())
    run_snakemake(workdir, config, snakefile=repo / "Snakefile")
    return repo, workdir, config


def _copy_run(finished, tmp_path: Path) -> tuple[Path, Path]:
    repo, workdir, _ = finished
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy, symlinks=True)  # copy2: modification times kept
    return repo, copy


def _stable(summary: dict) -> dict:
    """A summary without what depends on when and how long the jobs ran."""
    stable = {k: v for k, v in summary.items() if k not in JOB_FIELDS}
    if stable.get("checkpoint_manifest"):
        stable["checkpoint_manifest"] = dict(stable["checkpoint_manifest"], fetched_at=None)
    return stable


def test_changing_the_primary_method_regrades_only(finished, tmp_path):
    repo, workdir = _copy_run(finished, tmp_path)
    snakefile = repo / "Snakefile"
    changed = write_config(workdir, tiny_config(scoring={"primary": "flexible-extract"}))
    planned = _planned(run_snakemake(workdir, changed, "-n", snakefile=snakefile))
    evaluations = sorted(run_root(workdir).glob("eval/*/*/*/summary.json"))
    assert planned == Counter(
        score=len(evaluations),
        check_invariance=1,
        export_lm_eval=len(evaluations),
        render_report=1,
        verdict=1,
        all=1,
    )
    run_snakemake(workdir, changed, snakefile=snakefile)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    new_config = write_config(fresh, tiny_config(scoring={"primary": "flexible-extract"}))
    run_snakemake(fresh, new_config, snakefile=snakefile)
    for path in evaluations:
        relative = path.relative_to(workdir)
        regraded, new = json.loads(path.read_text()), json.loads((fresh / relative).read_text())
        assert regraded["primary_method"] == "flexible-extract"
        assert regraded["resumed_shards"] == 0  # not regenerated: the old generation's record
        assert _stable(regraded) == _stable(new), relative
        rollouts = relative.with_name("rollouts.jsonl")
        assert (workdir / rollouts).read_bytes() == (fresh / rollouts).read_bytes()


def _importers(module: str) -> set[str]:
    return {rule for rule, command in RULES.items() if module in codegraph.stage_modules(command)}


def _module_for(rule: str) -> str:
    """A module `rule`'s command imports that as few other stages as possible import (ideally
    only `rule` and its dependents; export_lm_eval shares all of its own with render_report,
    which shows its standard errors and stop sequences)."""
    modules = sorted(codegraph.stage_modules(RULES[rule]) - set(codegraph.ENTRY))
    modules = [m for m in modules if not m.startswith(f"{codegraph.CLI}.")]
    return min(modules, key=lambda m: (len(_importers(m) - _dependents(rule)), m))


def _replanned_by(module: str) -> set[str]:
    """Every stage whose command imports `module`, and everything downstream of those."""
    found = _importers(module)
    return found.union(*(_dependents(rule) for rule in found))


@pytest.mark.parametrize("rule", list(RULES))
def test_editing_a_module_replans_exactly_its_stage_and_dependents(finished, rule):
    """Dry runs on the finished run itself (a copy would change the report's recorded
    `--configfile` path, a param of render_report)."""
    repo, workdir, config = finished
    module = _module_for(rule)
    path = codegraph.module_files(repo / "workflow" / "gsm8k_eval")[module]
    original = path.read_text()
    path.write_text(original + "# edited\n")
    try:
        result = run_snakemake(workdir, config, "-n", snakefile=repo / "Snakefile")
    finally:
        path.write_text(original)
    planned = set(_planned(result))
    expected = _replanned_by(module)
    assert rule in expected and _dependents(rule) <= expected
    assert planned == expected, f"editing {module}: planned {sorted(planned)}"


def _flip_one_logit_bit(rollouts: Path) -> None:
    rows = [json.loads(line) for line in rollouts.read_text().splitlines()]
    (bits,) = struct.unpack("<I", struct.pack("<f", rows[0]["token_logits"][0]))
    rows[0]["token_logits"][0] = struct.unpack("<f", struct.pack("<I", bits ^ 1))[0]
    rollouts.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_a_planted_logit_bit_fails_the_run_after_the_report(finished, tmp_path):
    repo, workdir = _copy_run(finished, tmp_path)
    config = workdir / finished[2].name  # the copy's (a run belongs to its config file)
    sizes = sorted(tiny_config()["batch_sizes"])
    _flip_one_logit_bit(run_root(workdir) / f"eval/base/fixed/bs{sizes[-1]}/rollouts.jsonl")
    report = next(run_root(workdir).glob("report/*.md"))
    before = report.stat().st_mtime_ns
    failed = run_snakemake(workdir, config, check=False, snakefile=repo / "Snakefile")
    assert failed.returncode != 0
    reasons = [line for line in failed.stderr.splitlines() if "batch invariance violated" in line]
    assert reasons and reasons[0].startswith("gsm8k-eval verdict: error: batch invariance")
    assert "base/fixed" in reasons[0] and "in logits only" in reasons[0]
    assert report.stat().st_mtime_ns != before, "the report was not rendered first"
    invariance = json.loads((run_root(workdir) / "invariance/base/fixed.json").read_text())
    assert (invariance["token_invariant"], invariance["invariant"]) == (True, False)
    assert not (run_root(workdir) / "verdict.json").exists()
    lenient = tiny_config(invariance={"fail_on_divergence": False})
    warned = run_snakemake(workdir, write_config(workdir, lenient), snakefile=repo / "Snakefile")
    assert warned.returncode == 0
    verdict = json.loads((run_root(workdir) / "verdict.json").read_text())
    assert verdict["passed"] and len(verdict["warnings"]) == 1
