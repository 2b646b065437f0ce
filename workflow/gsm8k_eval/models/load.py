"""Loading a model directory (written by ``fetch_model``) into tunix's Gemma3."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsm8k_eval.io import read_json
from gsm8k_eval.models.hf_config import model_config_from_hf
from gsm8k_eval.models.layout import CONFIG_FILE, ModelSourceError
from gsm8k_eval.tokenizer import Tokenizer


@dataclass
class LoadedModel:
    """A tunix Gemma3 model with its config and tokenizer."""

    model: Any  # tunix.models.gemma3.model.Gemma3
    model_config: Any  # tunix.models.gemma3.model.ModelConfig
    tokenizer: Tokenizer
    dtype: str


def load_model(model_dir: Path, dtype: str = "float32") -> LoadedModel:
    """Loads a model directory written by ``fetch_model`` into a tunix Gemma3."""
    import jax.numpy as jnp
    from tunix.models.gemma3 import params_safetensors

    model_dir = Path(model_dir)
    model_config = model_config_from_hf(read_json(model_dir / CONFIG_FILE), dtype)
    tokenizer = Tokenizer.from_dir(model_dir)
    if tokenizer.vocab_size > model_config.num_embed:
        raise ModelSourceError(
            f"tokenizer has {tokenizer.vocab_size} tokens, embedding {model_config.num_embed}"
        )
    model = params_safetensors.create_model_from_safe_tensors(
        str(model_dir), model_config, mesh=None, dtype=getattr(jnp, dtype)
    )
    return LoadedModel(model=model, model_config=model_config, tokenizer=tokenizer, dtype=dtype)
