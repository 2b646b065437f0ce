"""HF-layout sources: ``hf:<repo>[@revision]`` (hub snapshot) and ``dir:/path``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from gsm8k_eval.io import read_json, sha256_file
from gsm8k_eval.models.hf_config import hf_text_config, model_config_from_hf
from gsm8k_eval.models.layout import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelSource,
    ModelSourceError,
    write_config,
)
from gsm8k_eval.tokenizer import TOKENIZER_FILE, Tokenizer


def fetch_hf(src: ModelSource, out: Path) -> dict[str, Any]:
    """``hf:<repo>[@revision]``: a hub snapshot (``HF_TOKEN`` for gated repos), copied."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        snapshot = snapshot_download(
            src.target,
            revision=src.revision,
            token=os.environ.get("HF_TOKEN") or None,
            allow_patterns=["config.json", "*.safetensors", "*.safetensors.index.json",
                            TOKENIZER_FILE],
        )  # fmt: skip
    except (GatedRepoError, RepositoryNotFoundError) as err:
        raise ModelSourceError(_hf_access_message(src.target)) from err
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise ModelSourceError(_hf_access_message(src.target)) from err
        raise
    inputs = copy_hf_layout(Path(snapshot), out)
    resolved = Path(snapshot).name
    return inputs | {"repo": src.target, "resolved_revision": resolved}


def _hf_access_message(repo: str) -> str:
    return (
        f"cannot download hf:{repo} (gated, private or missing): set HF_TOKEN to a token whose "
        f"account accepted the license at https://huggingface.co/{repo}"
    )


def fetch_dir(src: ModelSource, out: Path) -> dict[str, Any]:
    """``dir:/path``: a local HF-layout directory."""
    return copy_hf_layout(Path(src.target), out)


def copy_hf_layout(snapshot: Path, out: Path) -> dict[str, Any]:
    """Copies an HF Gemma 3 checkpoint (text or multimodal config) into our layout."""
    if not (snapshot / CONFIG_FILE).is_file() or not (snapshot / TOKENIZER_FILE).is_file():
        raise ModelSourceError(f"{snapshot} lacks config.json or tokenizer.json")
    config = read_json(snapshot / CONFIG_FILE)
    text_config = hf_text_config(config)
    model_config_from_hf(text_config, "float32")  # validate before copying gigabytes
    shards = sorted(snapshot.glob("*.safetensors"))
    if not shards:
        raise ModelSourceError(f"{snapshot} has no *.safetensors")
    if len(shards) == 1:
        shutil.copyfile(shards[0], out / WEIGHTS_FILE)
    else:
        _merge_safetensors(shards, out / WEIGHTS_FILE)
    write_config(text_config, out)
    shutil.copyfile(snapshot / TOKENIZER_FILE, out / TOKENIZER_FILE)
    Tokenizer.from_dir(out)  # fails early on a tokenizer without Gemma specials
    return {"files": {p.name: sha256_file(p) for p in [snapshot / CONFIG_FILE, *shards]}}


def _merge_safetensors(shards: list[Path], target: Path) -> None:
    from safetensors import safe_open
    from safetensors.flax import save_file

    tensors = {}
    for shard in shards:
        with safe_open(str(shard), framework="flax") as f:
            tensors |= {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(tensors, str(target), metadata={"format": "pt"})
