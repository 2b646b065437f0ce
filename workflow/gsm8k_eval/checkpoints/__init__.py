"""Fetch tunix LoRA actor checkpoints (GCS or local) and restore them onto a base model.

tunix's ``PeftTrainer`` (used by the RL trainer for the actor) saves with orbax under
``<run>/actor/<step>/``: ``_CHECKPOINT_METADATA``, ``model_params/`` and ``optimizer_state/``.
With LoRA, ``model_params`` holds only the qwix ``*_lora_a``/``*_lora_b`` arrays. Evaluation
needs ``model_params`` and the step metadata, never ``optimizer_state``.

Modules, bottom to top: ``manifest`` (errors, object records, checksums, ``manifest.json``),
``gcs`` (sources, filesystems, credentials or anonymous access), ``steps`` (step selection),
``fetch`` (download, verification, staging, resume) and ``restore`` (qwix LoRA + orbax; needs
JAX, imported lazily). Fetching never imports JAX; restoring never touches the network.
See docs/checkpoints.md.
"""

from gsm8k_eval.checkpoints.fetch import MAX_ATTEMPTS, FetchStats, fetch_checkpoint
from gsm8k_eval.checkpoints.gcs import Source, gcs_access, parse_source
from gsm8k_eval.checkpoints.manifest import (
    BASE_SOURCE,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PARAMS_DIR,
    SKIPPED_ITEMS,
    STEP_METADATA,
    CheckpointAccessError,
    CheckpointError,
    CheckpointIntegrityError,
    CheckpointNotFoundError,
    RemoteObject,
    file_digests,
    read_manifest,
    verify_checkpoint_dir,
)
from gsm8k_eval.checkpoints.restore import (
    DEFAULT_MODULE_PATH,
    CheckpointMismatchError,
    LoraConfig,
    apply_checkpoint,
)
from gsm8k_eval.checkpoints.steps import select_step
from gsm8k_eval.io import staging_dir

__all__ = [
    "BASE_SOURCE",
    "DEFAULT_MODULE_PATH",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MAX_ATTEMPTS",
    "PARAMS_DIR",
    "SKIPPED_ITEMS",
    "STEP_METADATA",
    "CheckpointAccessError",
    "CheckpointError",
    "CheckpointIntegrityError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "FetchStats",
    "LoraConfig",
    "RemoteObject",
    "Source",
    "apply_checkpoint",
    "fetch_checkpoint",
    "file_digests",
    "gcs_access",
    "parse_source",
    "read_manifest",
    "select_step",
    "staging_dir",
    "verify_checkpoint_dir",
]
