"""Shards keyed by content: every input a shard's tokens depend on invalidates it, display-only
values do not; merging refuses shards made with different inputs (issue 11 §1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from lora_checkpoints import LORA, save_lora_steps
from shared_data import GSM8K_DIR

from gsm8k_eval import codegraph, fingerprint
from gsm8k_eval.cpu_kind import cpu_kind
from gsm8k_eval.evaluate import EvaluateOptions, evaluate
from gsm8k_eval.evaluation import shards
from gsm8k_eval.models import fetch_model

LIMIT = 2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A tiny model, a 3-example dataset and a 4-example few-shot file."""
    root = tmp_path_factory.mktemp("fingerprint-inputs")
    dataset = root / "test.jsonl"
    dataset.write_text("".join((GSM8K_DIR / "test.jsonl").read_text().splitlines(True)[:3]))
    fewshot = root / "train.jsonl"
    fewshot.write_text("".join((GSM8K_DIR / "train.jsonl").read_text().splitlines(True)[:4]))
    return {
        "model": fetch_model("random:tiny", root / "model"),
        "dataset": dataset,
        "fewshot": fewshot,
    }


def _options(model_dir: Path, dataset: Path, out: Path, **changes) -> EvaluateOptions:
    options = EvaluateOptions(
        dataset_path=dataset,
        model_dir=model_dir,
        output_dir=out,
        batch_size=1,
        limit=LIMIT,
        max_generation_steps=4,
        max_prompt_length=640,
        shard_size=1,
        device="cpu",
        config_hash="hash-a",
        model_source="random:tiny",
    )
    return replace(options, **changes)


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def baseline(inputs, tmp_path_factory) -> Path:
    """One finished evaluation (2 shards) that each test copies and reruns with one change."""
    out = tmp_path_factory.mktemp("baseline") / "eval"
    evaluate(_options(inputs["model"], inputs["dataset"], out))
    assert _summary(out)["resumed_shards"] == 0
    return out


@pytest.fixture
def copied(baseline, tmp_path) -> Path:
    out = tmp_path / "eval"
    shutil.copytree(baseline, out)
    return out


def test_unchanged_rerun_reuses_every_shard(inputs, copied, baseline):
    evaluate(_options(inputs["model"], inputs["dataset"], copied))
    summary = _summary(copied)
    assert (summary["shards"], summary["resumed_shards"]) == (LIMIT, LIMIT)
    assert (copied / "rollouts.jsonl").read_bytes() == (baseline / "rollouts.jsonl").read_bytes()


def test_display_only_changes_keep_the_shards(inputs, baseline, tmp_path):
    """Another output folder, config hash, model source label and model path (same files)."""
    out = tmp_path / "moved" / "eval"
    shutil.copytree(baseline, out)
    model = tmp_path / "model-copy"
    shutil.copytree(inputs["model"], model)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("shard-*")}
    options = _options(
        model, inputs["dataset"], out, config_hash="hash-b", model_source="display label"
    )
    evaluate(options)
    assert _summary(out)["resumed_shards"] == LIMIT
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("shard-*")} == stamps
    assert _summary(out)["config_hash"] == "hash-b"


def test_replaced_model_weights_at_the_same_path_regenerate(inputs, tmp_path):
    """The issue's repro: seed-1 weights fetched over the seed-0 folder, same command."""
    model = fetch_model("random:tiny", tmp_path / "model")
    out = tmp_path / "eval"
    evaluate(_options(model, inputs["dataset"], out))
    before = (out / "rollouts.jsonl").read_bytes()
    fetch_model("random:tiny?seed=1", model)
    evaluate(_options(model, inputs["dataset"], out))
    assert _summary(out)["resumed_shards"] == 0
    fresh = tmp_path / "fresh"
    evaluate(_options(model, inputs["dataset"], fresh))
    assert (out / "rollouts.jsonl").read_bytes() == (fresh / "rollouts.jsonl").read_bytes()
    assert (out / "rollouts.jsonl").read_bytes() != before


def test_changed_checkpoint_step_regenerates(inputs, tmp_path):
    from gsm8k_eval.checkpoints import fetch_checkpoint

    actor = save_lora_steps(inputs["model"], tmp_path / "actor", {5: 0, 10: 1})
    checkpoint = tmp_path / "checkpoint"
    out = tmp_path / "eval"
    lora = {"lora_rank": LORA["rank"], "lora_alpha": LORA["alpha"]}
    options = _options(
        inputs["model"],
        inputs["dataset"],
        out,
        checkpoint_dir=checkpoint,
        checkpoint_name="ft",
        **lora,
    )
    fetch_checkpoint(str(actor), checkpoint, step=5)
    evaluate(options)
    step5 = _rows(out)
    fetch_checkpoint(str(actor), checkpoint, step=10)
    evaluate(options)
    summary = _summary(out)
    assert summary["resumed_shards"] == 0
    assert summary["checkpoint_manifest"]["step"] == 10
    assert [r["tokens"] for r in _rows(out)] != [r["tokens"] for r in step5]


def test_refetching_the_same_checkpoint_step_keeps_the_shards(inputs, tmp_path):
    """The manifest's fetch time is not content: a refetch of the same step reuses shards."""
    from gsm8k_eval.checkpoints import fetch_checkpoint

    checkpoint = tmp_path / "checkpoint"
    first = fetch_checkpoint("base", checkpoint)
    digest = fingerprint.checkpoint_digest(first)
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["fetched_at"] = "2000-01-01T00:00:00+00:00"
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    assert fingerprint.checkpoint_digest(checkpoint) == digest
    manifest["lora"] = True
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    assert fingerprint.checkpoint_digest(checkpoint) != digest


def test_changed_dataset_regenerates(inputs, copied, tmp_path):
    """Same questions (same prompts), another gold answer: the dataset digest catches it."""
    dataset = tmp_path / "test.jsonl"
    lines = inputs["dataset"].read_text().splitlines(True)
    first = json.loads(lines[0])
    first["answer"] = first["answer"].rsplit("####", 1)[0] + "#### 12345"
    dataset.write_text(json.dumps(first) + "\n" + "".join(lines[1:]))
    evaluate(_options(inputs["model"], dataset, copied))
    assert _summary(copied)["resumed_shards"] == 0
    assert _rows(copied)[0]["gold"] == "12345"


def test_changed_prompt_text_regenerates(inputs, tmp_path):
    """Few-shot examples edited in place: options and dataset equal, the prompts differ."""
    fewshot = tmp_path / "train.jsonl"
    shutil.copy(inputs["fewshot"], fewshot)
    out = tmp_path / "eval"
    options = _options(
        inputs["model"],
        inputs["dataset"],
        out,
        prompt_template="fewshot",
        num_shots=1,
        fewshot_path=fewshot,
    )
    evaluate(options)
    before = _rows(out)
    lines = fewshot.read_text().splitlines(True)
    fewshot.write_text("".join(reversed(lines)))
    evaluate(options)
    assert _summary(out)["resumed_shards"] == 0
    assert [r["prompt"] for r in _rows(out)] != [r["prompt"] for r in before]


def test_changed_engine_option_regenerates(inputs, copied, baseline):
    """decode_rows does not change tokens (batch invariance), but it is an engine option."""
    evaluate(_options(inputs["model"], inputs["dataset"], copied, decode_rows=4))
    assert _summary(copied)["resumed_shards"] == 0
    assert [r["tokens"] for r in _rows(copied)] == [r["tokens"] for r in _rows(baseline)]


def test_changed_xla_flags_regenerate(inputs, copied, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    evaluate(_options(inputs["model"], inputs["dataset"], copied))
    summary = _summary(copied)
    assert summary["resumed_shards"] == 0
    assert summary["xla_flags"] == "--xla_cpu_enable_fast_math=false"
    assert summary["fingerprint"]["environment"]["XLA_FLAGS"] == summary["xla_flags"]


@pytest.mark.parametrize(
    ("reader", "value"),
    [
        ("numerics_versions", {"jax": "9.9.9"}),
        ("device_identity", {"platform": "gpu", "kind": "NVIDIA H200", "count": 1}),
        ("jax_numerics_config", {"jax_enable_x64": "True"}),
        ("numerics_environment", {"XLA_FLAGS": "--xla_gpu_autotune_level=0"}),
        ("code_digest", "0" * 64),
    ],
)
def test_environment_changes_regenerate(inputs, copied, monkeypatch, reader, value):
    """Versions, device, JAX config, flags, code: each reader feeds the fingerprint."""
    monkeypatch.setattr(fingerprint, reader, lambda *args: value)
    evaluate(_options(inputs["model"], inputs["dataset"], copied))
    summary = _summary(copied)
    assert summary["resumed_shards"] == 0
    assert value in summary["fingerprint"].values()


def test_shards_made_on_another_kind_of_cpu_are_regenerated(inputs, copied, monkeypatch):
    """XLA:CPU's float bits differ between CPU kinds (AMD vs Intel, recorded in test_engine)."""
    monkeypatch.setattr(fingerprint, "cpu_kind", lambda: "AuthenticAMD:avx2+fma")
    evaluate(_options(inputs["model"], inputs["dataset"], copied))
    summary = _summary(copied)
    assert summary["resumed_shards"] == 0
    assert summary["fingerprint"]["device"]["cpu"] == "AuthenticAMD:avx2+fma"


def test_one_mismatching_shard_is_regenerated_alone(inputs, copied, baseline):
    stats_path = copied / "shards" / "shard-00001.stats.json"
    stats = json.loads(stats_path.read_text())
    stats["fingerprint"] = "f" * 64
    stats_path.write_text(json.dumps(stats))
    evaluate(_options(inputs["model"], inputs["dataset"], copied))
    assert _summary(copied)["resumed_shards"] == LIMIT - 1
    assert (copied / "rollouts.jsonl").read_bytes() == (baseline / "rollouts.jsonl").read_bytes()


def test_merging_refuses_shards_with_different_fingerprints(inputs, copied):
    digest = _summary(copied)["fingerprint_sha256"]
    stats_path = copied / "shards" / "shard-00000.stats.json"
    stats = json.loads(stats_path.read_text())
    stats["fingerprint"] = "f" * 64
    stats_path.write_text(json.dumps(stats))
    options = _options(inputs["model"], inputs["dataset"], copied)
    with pytest.raises(RuntimeError, match="refusing to merge shards made with different inputs"):
        shards.merge_shards(options, copied / "shards", LIMIT, digest)


def test_summary_records_the_shard_fingerprint(baseline, inputs):
    summary = _summary(baseline)
    recorded = summary["fingerprint"]
    assert fingerprint.fingerprint_digest(recorded) == summary["fingerprint_sha256"]
    assert recorded["dataset_sha256"] == fingerprint.DigestCache().sha256(inputs["dataset"])
    assert recorded["code_sha256"] == fingerprint.code_digest()
    assert recorded["device"]["platform"] == "cpu"
    assert recorded["device"]["cpu"] == cpu_kind()
    assert "config_hash" not in recorded["options"] and "output_dir" not in recorded["options"]
    for path in (baseline / "shards").glob("shard-*.stats.json"):
        assert json.loads(path.read_text())["fingerprint"] == summary["fingerprint_sha256"]


# -- digests -------------------------------------------------------------------------------------


def test_digest_cache_detects_replaced_bytes_of_equal_size(tmp_path):
    cache_path = tmp_path / "cache.json"
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 64)
    cache = fingerprint.DigestCache.load(cache_path)
    first = cache.sha256(weights)
    cache.save()
    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(b"b" * 64)
    replacement.replace(weights)
    assert fingerprint.DigestCache.load(cache_path).sha256(weights) != first
    with weights.open("r+b") as handle:  # rewritten in place, same size
        handle.write(b"c")
    assert fingerprint.DigestCache.load(cache_path).sha256(weights) == fingerprint.sha256_file(
        weights
    )


def test_grading_is_not_in_the_generation_fingerprint(inputs, copied, baseline):
    """Another primary method regrades the same shards (issue 23 §2; this test used to lock in
    the opposite); the generating code digest leaves the grading modules out."""
    evaluate(_options(inputs["model"], inputs["dataset"], copied), primary_method="strict-match")
    summary = _summary(copied)
    assert (summary["resumed_shards"], summary["primary_method"]) == (LIMIT, "strict-match")
    assert summary["fingerprint_sha256"] == _summary(baseline)["fingerprint_sha256"]
    assert "primary_method" not in summary["fingerprint"]["options"]
    generating = codegraph.stage_modules("evaluate")
    assert not {"gsm8k_eval.scoring", "gsm8k_eval.grading", "gsm8k_eval.summary"} & generating


@pytest.mark.parametrize("module", ["gsm8k_eval.fingerprint", "gsm8k_eval.device"])
def test_module_imports_without_jax(module):
    code = f"import sys, {module}; {module}.__name__; print('jax' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"
    code = "import gsm8k_eval.fingerprint as f; print(len(f.code_digest()))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "64"


def test_shards_of_the_older_graded_layout_are_regenerated_not_mixed(inputs, copied, caplog):
    """Format-1 shards held graded rollouts: their folder is emptied (a log line names the
    format) and every shard is generated again, never merged with new ones."""
    marker = copied / "shards" / "fingerprint.json"
    old = json.loads(marker.read_text())
    marker.write_text(json.dumps(dict(old, format=1)))
    for path in (copied / "shards").glob("shard-*.jsonl"):  # as the old layout wrote them
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(dict(r, correct=True)) + "\n" for r in rows))
    with caplog.at_level("INFO"):
        evaluate(_options(inputs["model"], inputs["dataset"], copied))
    assert _summary(copied)["resumed_shards"] == 0
    assert "format" in caplog.text and "starting afresh" in caplog.text
    generations = (copied / "generations.jsonl").read_text().splitlines()
    assert all("correct" not in json.loads(line) for line in generations)


def test_shared_autotune_dump_and_load_count_as_one(monkeypatch):
    """The first job of a shared-autotune run dumps the results that later ones (a resumed job,
    another part) load: their fingerprints must agree, other XLA flags still count."""
    from gsm8k_eval.fingerprint import numerics_environment

    def env(flags: str) -> dict:
        monkeypatch.setenv("XLA_FLAGS", flags)
        return numerics_environment()

    dump = env("--xla_gpu_deterministic_ops=true --xla_gpu_dump_autotune_results_to=/c/a.txt")
    load = env("--xla_gpu_deterministic_ops=true --xla_gpu_load_autotune_results_from=/c/a.txt")
    assert dump == load
    assert env("--xla_gpu_autotune_level=0") != env("--xla_gpu_autotune_level=4")
