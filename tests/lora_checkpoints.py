"""A tunix LoRA checkpoint of the tiny model with several steps, saved as tunix's PeftTrainer does
(each step its own random LoRA weights), for tests that switch steps."""

from __future__ import annotations

from pathlib import Path

LORA = {"rank": 4, "alpha": 8.0}


def save_lora_steps(model_dir: Path, actor_dir: Path, seeds_by_step: dict[int, int]) -> Path:
    """Write `actor_dir/<step>/...` for each step, LoRA weights drawn with that step's seed."""
    import jax
    import jax.numpy as jnp
    import numpy as np
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
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.LoRAParam)
    options = ocp.CheckpointManagerOptions(max_to_keep=len(seeds_by_step))
    manager = CheckpointManager(str(actor_dir), options)
    for step, seed in sorted(seeds_by_step.items()):
        leaves, treedef = jax.tree_util.tree_flatten(nnx.state(model, nnx.LoRAParam))
        rng = np.random.default_rng(seed)
        new = [jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype) for x in leaves]
        nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))
        manager.save(step, model, optimizer, save_only_lora_params=True, force=True)
    manager.close()
    return actor_dir
