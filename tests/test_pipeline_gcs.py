"""End to end with a real GCS emulator: a tunix LoRA checkpoint of the tiny model on gs://,
fetched, verified and restored by the Snakemake pipeline, evaluated at two batch sizes."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pipeline_helpers import run_root, run_snakemake, tiny_config, write_config

LORA = {"rank": 4, "alpha": 8.0}
STEP = 5


def _save_tunix_lora_checkpoint(model_dir, actor_dir) -> None:
    """Apply qwix LoRA to the tiny model, randomise it, save as tunix's PeftTrainer does."""
    import optax
    import orbax.checkpoint as ocp
    import qwix
    from flax import nnx
    from tunix.sft.checkpoint_manager import CheckpointManager

    from gsm8k_eval.checkpoints import LoraConfig
    from gsm8k_eval.models import load_model

    base = load_model(model_dir, "float32").model
    provider = qwix.LoraProvider(module_path=LoraConfig().module_path, **LORA)
    model = qwix.apply_lora_to_model(base, provider, rngs=nnx.Rngs(1), **base.get_model_input())
    state = nnx.state(model, nnx.LoRAParam)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    rng = np.random.default_rng(0)
    new = [jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype) for x in leaves]
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.LoRAParam)
    manager = CheckpointManager(str(actor_dir), ocp.CheckpointManagerOptions(max_to_keep=2))
    manager.save(STEP, model, optimizer, save_only_lora_params=True, force=True)
    manager.close()


@pytest.fixture(scope="module")
def gcs_pipeline(tmp_path_factory, gcs_emulator_server, gsm8k_dir):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in gcs_emulator_server.env().items():
            patch.setenv(name, value)
        yield _run_pipeline_on_gcs(tmp_path_factory.mktemp("gcs-pipeline"), gcs_emulator_server)


def _run_pipeline_on_gcs(work, emulator):
    from gsm8k_eval.models import fetch_model

    model_dir = fetch_model("random:tiny", work / "tiny-model")
    _save_tunix_lora_checkpoint(model_dir, work / "trainer" / "actor")
    url = emulator.create_bucket("pipeline-test") + "/tunix/tiny-grpo/actor"
    emulator.upload_dir(work / "trainer" / "actor", url)
    config = tiny_config(
        checkpoints=[{"name": "base", "source": "base"}, {"name": "tiny-grpo", "source": url}],
        lora=LORA,
        batch_sizes=[1, 3],
        limit=4,
    )
    workdir = work / "run"
    workdir.mkdir()
    run_snakemake(workdir, write_config(workdir, config))
    return workdir, url


def _tokens(workdir, checkpoint: str, batch_size: int) -> list[list[int]]:
    path = run_root(workdir) / "eval" / checkpoint / "fixed" / f"bs{batch_size}" / "rollouts.jsonl"
    return [json.loads(line)["tokens"] for line in path.read_text().splitlines()]


def test_gcs_checkpoint_is_fetched_with_provenance(gcs_pipeline):
    workdir, url = gcs_pipeline
    manifest = json.loads(
        (run_root(workdir) / "checkpoints" / "tiny-grpo" / "manifest.json").read_text()
    )
    assert manifest["source"] == url
    assert manifest["step"] == STEP
    assert not (run_root(workdir) / "checkpoints" / "tiny-grpo" / "optimizer_state").exists()


def test_lora_changes_the_outputs_and_stays_batch_invariant(gcs_pipeline):
    workdir, _ = gcs_pipeline
    lora = _tokens(workdir, "tiny-grpo", 1)
    assert lora == _tokens(workdir, "tiny-grpo", 3)
    assert lora != _tokens(workdir, "base", 1), "the LoRA checkpoint had no effect"
    summary = json.loads(
        (run_root(workdir) / "eval" / "tiny-grpo" / "fixed" / "bs3" / "summary.json").read_text()
    )
    assert summary["checkpoint_manifest"]["source"].startswith("gs://")
    report = (run_root(workdir) / "report" / "gsm8k_eval_report.md").read_text()
    assert "tiny-grpo" in report
