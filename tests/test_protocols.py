"""The seed study's three protocols (configs/gemma3-1b-it-gsm8k*.yaml): chat + strict, tunix's
GRPO format + <answer> grading, lm-eval's 5-shot gsm8k + strict-match.

The fast tests check that the three configs differ only in their protocol keys. The slow test
runs each config end to end, offline, on the real Gemma 3 270M: the config as shipped with only
what cannot run here replaced (model and dataset sources, the GCS checkpoints, the GPU, the
length of a run).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import load_config_file, run_snakemake, write_config

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "configs" / "gemma3-1b-it-gsm8k.yaml"
# config file -> (template, primary method, shots in the prompt)
PROTOCOLS = {
    "gemma3-1b-it-gsm8k.yaml": ("chat", "strict", 0),
    "gemma3-1b-it-gsm8k-tunix-grpo.yaml": ("tunix_grpo", "answer", 0),
    "gemma3-1b-it-gsm8k-lm-eval.yaml": ("fewshot", "strict-match", 5),
}
# Keys a protocol may change; everything else is the seed study's.
PROTOCOL_KEYS = {"run_name", "prompt", "scoring", "reference"}
PROTOCOL_SUBKEYS = {
    "sampling": {"max_generation_steps", "max_prompt_length"},
    "dataset": {"train_sha256"},
}


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / "configs" / name).read_text())


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_configs_differ_from_the_seed_study_only_in_protocol_keys(name):
    seed, config = _load(SEED.name), _load(name)
    for key in set(seed) | set(config):
        if key in PROTOCOL_KEYS:
            continue
        if key in PROTOCOL_SUBKEYS:
            allowed = PROTOCOL_SUBKEYS[key]
            mine = {k: v for k, v in config[key].items() if k not in allowed}
            theirs = {k: v for k, v in seed[key].items() if k not in allowed}
            assert mine == theirs, (name, key)
        else:
            assert config.get(key) == seed.get(key), (name, key)


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_configs_are_valid_and_pinned(name):
    template, primary, shots = PROTOCOLS[name]
    cfg = load_config_file(REPO / "configs" / name)
    assert (cfg.prompt.template, cfg.primary_method) == (template, primary)
    if shots:
        assert cfg.prompt.num_shots == shots
    assert cfg.model.revision and len(cfg.model.revision) == 40  # pinned commit
    assert cfg.device == "gpu"  # a missing GPU fails instead of falling back to the CPU
    assert "alpha" in _load(name)["lora"]  # LoRA checkpoints: explicit alpha


def test_lm_eval_protocol_is_lm_evals_gsm8k_task():
    from gsm8k_eval.prompts import STOP_SEQUENCES

    cfg = load_config_file(REPO / "configs" / "gemma3-1b-it-gsm8k-lm-eval.yaml")
    assert STOP_SEQUENCES[cfg.prompt.template] == ("Question:", "</s>", "<|im_end|>")
    assert 106 in cfg.sampling.eos_tokens  # Gemma's <end_of_turn>
    assert cfg.sampling.max_generation_steps == 256  # lm-eval's max_gen_toks


# The length of a CPU run: LIMIT examples at batch sizes 1 and LIMIT (every example in one batch).
LIMIT = 4


def _offline(config: dict, model_dir: Path, gsm8k_dir: Path, run: str) -> dict:
    """The shipped config with what cannot run offline on a CPU replaced."""
    config = {**config, "run": run, "limit": LIMIT, "batch_sizes": [1, LIMIT]}
    config["samplers"] = ["fixed"]
    config["model"] = {"source": f"dir:{model_dir}", "name": config["model"]["name"]}
    config["dataset"] = {
        "source": str(gsm8k_dir / "test.jsonl"),
        "fewshot_source": str(gsm8k_dir / "train.jsonl"),
        "test_sha256": config["dataset"]["test_sha256"],
        "train_sha256": "6043ef64147b59871f4fd3adf669c306fe0a4c27e5a5c4bfb761f3f084895a13",
    }
    config["checkpoints"] = [c for c in config["checkpoints"] if c["source"] == "base"]
    config["reference"] = {**config.get("reference", {}), "enabled": False}
    config["evaluation"] = {**config["evaluation"], "device": "cpu", "shard_size": LIMIT}
    sampling = config["sampling"]
    config["sampling"] = {**sampling, "decode_rows": 8, "max_generation_steps": 16}
    return config


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_runs_end_to_end_on_the_real_270m(name, real_model_dir, gsm8k_dir, tmp_path):
    template, primary, shots = PROTOCOLS[name]
    run = Path(name).stem
    config = _offline(_load(name), real_model_dir, gsm8k_dir, run)
    run_snakemake(tmp_path, write_config(tmp_path, config), timeout=1800)

    root = tmp_path / "results" / run
    for bs in (1, LIMIT):
        summary = json.loads(
            (root / "eval" / "base" / "fixed" / f"bs{bs}" / "summary.json").read_text()
        )
        assert summary["total"] == LIMIT
        assert (summary["prompt_template"], summary["primary_method"]) == (template, primary)
        if shots:  # the other templates take no examples (their num_shots is unused)
            assert summary["num_shots"] == shots
        assert {"strict", "strict-match", "flexible-extract", "answer"} <= set(
            summary["accuracy_by_method"]
        )
        assert summary["accuracy"] == summary["accuracy_by_method"][primary]
        assert summary["checkpoint_step"] is None  # base: no step
    invariance = json.loads((root / "invariance" / "base" / "fixed.json").read_text())
    assert invariance["invariant"] is True
    assert (root / "report" / "gsm8k_eval_report.md").exists()


# Projected minutes per job of the seed study on one H200 (README "Cost of the seed study"):
# the SLURM profile's runtime must cover the slowest job of each GPU rule.
PROJECTED_MINUTES = {"evaluate": 17, "evaluate_spot_check": 2, "reference": 15 * 60}


def _planned(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job in `snakemake -n` output."""
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in output.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line):
            jobs.append((match[1], {}))
        elif (match := re.match(r"^\s+resources: (.*)$", line)) and jobs:
            jobs[-1][1].update(item.partition("=")[::2] for item in match[1].split(", "))
    return jobs


def _dry_run(tmp_path: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(tmp_path), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return _planned(result.stdout)


def test_readme_study_block_runs_every_protocol_with_the_one_gpu_profile():
    readme = (REPO / "README.md").read_text()
    assert "--profile profiles/local-gpu --configfile configs/gemma3-1b-it-gsm8k$protocol.yaml" in (
        readme
    )
    loop = re.search(r"for protocol in ([^;]+); do", readme)[1].split()
    names = {f"gemma3-1b-it-gsm8k{suffix.strip(chr(34))}.yaml" for suffix in loop}
    assert names == set(PROTOCOLS)
    # The accelerator JAX is installed before the first snakemake command.
    assert readme.index('pip install "jax[cuda') < readme.index("for protocol in")


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_one_gpu_box_plan_gives_every_gpu_job_the_gpu(name, tmp_path):
    configfile = str(REPO / "configs" / name)
    jobs = _dry_run(tmp_path, "--profile", "profiles/local-gpu", "--configfile", configfile)
    gpu_jobs = [rule for rule, resources in jobs if resources.get("gpu") == "1"]
    # 3 checkpoints x (fixed at bs 32, tunix at bs 1 and 32), and fixed's bs 1 spot check each
    assert gpu_jobs.count("evaluate") == 9
    assert gpu_jobs.count("evaluate_spot_check") == 3
    assert gpu_jobs.count("reference") == (1 if _load(name)["reference"]["enabled"] else 0)
    assert set(gpu_jobs) <= {"evaluate", "evaluate_spot_check", "reference"}


def test_slurm_plan_gives_gpu_jobs_a_gpu_and_a_runtime_above_their_cost(tmp_path):
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("snakemake-executor-plugin-slurm is missing: pip install -e '.[cluster]'")
    configfile = str(REPO / "configs" / "gemma3-1b-it-gsm8k.yaml")
    jobs = _dry_run(tmp_path, "--profile", "profiles/slurm", "--configfile", configfile)
    gpu_rules = {rule for rule, _ in jobs} & set(PROJECTED_MINUTES)
    assert gpu_rules == {"evaluate", "evaluate_spot_check", "reference"}
    for rule, resources in jobs:
        if rule in PROJECTED_MINUTES:
            assert resources["gpu"] == "1", (rule, resources)
            assert int(resources["runtime"]) >= PROJECTED_MINUTES[rule], (rule, resources)
