"""Restore a fetched tunix LoRA checkpoint onto a base model (qwix LoRA + orbax).

LoRA rank, alpha and module_path are NOT stored in the checkpoint: they come from
:class:`LoraConfig`. A wrong rank or module_path is detected (tree/shape mismatch); a wrong alpha
cannot be: it restores silently and scales every LoRA delta by ``alpha / rank``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsm8k_eval import schema
from gsm8k_eval.checkpoints.manifest import PARAMS_DIR, read_manifest, verify_checkpoint_dir

log = logging.getLogger(__name__)

# tunix examples/rl/grpo/gsm8k/configs/gemma3_1b.yaml (and every tunix GRPO config).
DEFAULT_MODULE_PATH: str = schema.default("lora.module_path")


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's LoRA tree does not match the model + :class:`LoraConfig` (multi-line)."""


@dataclass(frozen=True)
class LoraConfig:
    """qwix LoRA hyper-parameters; must equal what the trainer used (not stored in checkpoints).

    Defaults are the config schema's `lora.*` (rank 16 as in the seed's runs; alpha = rank, i.e.
    scale ``alpha / rank = 1`` as in every tunix GRPO/PPO example config; module_path as in
    tunix's Gemma3-1B GRPO config).
    """

    rank: int = field(default_factory=lambda: schema.default("lora.rank"))
    alpha: float = field(default_factory=lambda: schema.default("lora.alpha"))
    module_path: str = DEFAULT_MODULE_PATH

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"lora.rank must be a positive int, got {self.rank!r}")
        if not self.alpha > 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha!r}")
        if not self.module_path:
            raise ValueError("lora.module_path must be a non-empty regex")
        re.compile(self.module_path)


def _norm_path(path: tuple[Any, ...]) -> str:
    """'layers.0.attn.q_einsum.w_lora_a' for jax key paths of nnx state or orbax metadata."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    if parts and parts[-1] == "value":
        parts.pop()
    return ".".join(parts)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    import jax

    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {_norm_path(p): tuple(leaf.shape) for p, leaf in leaves}


def _warn_on_dtype_cast(target: Any, found_tree: Any) -> None:
    """orbax casts restored arrays to the model's dtype; say so when that happens."""
    import jax

    want = {_norm_path(p): str(x.dtype) for p, x in jax.tree_util.tree_leaves_with_path(target)}
    have = {_norm_path(p): str(x.dtype) for p, x in jax.tree_util.tree_leaves_with_path(found_tree)}
    casts = sorted({(have[k], want[k]) for k in want if k in have and have[k] != want[k]})
    for src_dtype, dst_dtype in casts:
        log.warning("LoRA params stored as %s are cast to the model's %s", src_dtype, dst_dtype)


def _mismatch_report(
    expected: dict[str, tuple[int, ...]],
    found: dict[str, tuple[int, ...]],
    lora: LoraConfig,
    params_dir: Path,
) -> str | None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if not (missing or unexpected or shapes):
        return None
    ranks = sorted({s[-1] for k, s in found.items() if k.endswith("_lora_a") and s})
    lines = [
        f"LoRA checkpoint {params_dir} does not match the model with rank={lora.rank}, "
        f"module_path={lora.module_path!r}: {len(shapes)} shape mismatches, {len(missing)} "
        f"expected but missing, {len(unexpected)} unexpected (checkpoint lora_a ranks: {ranks})."
    ]
    lines += [f"  shape {k}: expected {expected[k]}, found {found[k]}" for k in shapes[:20]]
    lines += [f"  missing {k}: expected {expected[k]}" for k in missing[:20]]
    lines += [f"  unexpected {k}: found {found[k]}" for k in unexpected[:20]]
    return "\n".join(lines)


def _lora_model(model: Any, lora: LoraConfig) -> Any:
    """Apply qwix LoRA as tunix.cli.utils.model.apply_lora_to_model does."""
    import qwix
    from flax import nnx

    provider = qwix.LoraProvider(module_path=lora.module_path, rank=lora.rank, alpha=lora.alpha)
    return qwix.apply_lora_to_model(model, provider, rngs=nnx.Rngs(0), **model.get_model_input())


def apply_checkpoint(model: Any, ckpt_dir: Path, lora: LoraConfig, verify: bool = True) -> Any:
    """Return ``model`` with the fetched LoRA checkpoint applied (``model`` itself for base).

    Applies qwix LoRA (rank/alpha/module_path from ``lora``) to the base tunix model, checks the
    checkpoint's LoRA tree and shapes against the model's (:class:`CheckpointMismatchError`
    lists the differences, up to 20 of each kind), then restores ``model_params`` with orbax onto
    the LoRA params (cast to the model's dtype). ``verify`` re-checks files against the manifest.
    """
    ckpt_dir = Path(ckpt_dir)
    manifest = read_manifest(ckpt_dir)
    if not manifest.get("lora", False):
        return model
    if verify:
        verify_checkpoint_dir(ckpt_dir, manifest)
    import orbax.checkpoint as ocp
    from flax import nnx

    params_dir = (ckpt_dir / manifest["checkpoint_dir"] / PARAMS_DIR).resolve()
    lora_model = _lora_model(model, lora)
    target = nnx.state(lora_model, nnx.LoRAParam)
    checkpointer = ocp.PyTreeCheckpointer()
    stored = checkpointer.metadata(params_dir).item_metadata.tree
    report = _mismatch_report(_shapes(target), _shapes(stored), lora, params_dir)
    if report:
        raise CheckpointMismatchError(report)
    _warn_on_dtype_cast(target, stored)
    restored = checkpointer.restore(
        params_dir,
        args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)
        ),
    )
    nnx.update(lora_model, restored)
    return lora_model
