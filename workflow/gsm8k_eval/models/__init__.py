"""Model sources → one local model directory; loading that directory into tunix.

Modules, bottom to top (each imports only those above it in this list):

* ``layout``: the model directory (file names, ``source.json``), ``ModelSource``, errors, writers;
* ``hf_config``: HF Gemma 3 text configs and their mapping to tunix's ``ModelConfig``;
* one module per source family: ``tiny`` (``random:tiny``), ``gguf`` (``.gguf``, ``pypi:``),
  ``hf`` (``hf:``, ``dir:``), ``orbax`` (``orbax:``, ``gs://``, ``kaggle:``);
* ``sources``: ``parse_source``/``fetch_model`` (the registry of source kinds); ``load``:
  ``load_model``.

See docs/models.md.
"""

from gsm8k_eval.io import sha256_file
from gsm8k_eval.models.gguf import convert_gguf, gguf_hf_config, gguf_tensors, gguf_to_hf_name
from gsm8k_eval.models.hf import copy_hf_layout
from gsm8k_eval.models.hf_config import (
    DTYPES,
    GEMMA3_PATTERN,
    HF_GEMMA3_TEXT_DEFAULTS,
    gemma3_hf_config,
    hf_text_config,
    model_config_from_hf,
)
from gsm8k_eval.models.layout import (
    CONFIG_FILE,
    LAYOUT_VERSION,
    MODEL_FILES,
    SOURCE_FILE,
    WEIGHTS_FILE,
    ModelSource,
    ModelSourceError,
    is_fetched,
)
from gsm8k_eval.models.load import LoadedModel, load_model
from gsm8k_eval.models.orbax import (
    GEMMA3_SPM_TOKENIZER,
    convert_orbax,
    orbax_hf_config,
    sentencepiece_tokenizer,
    upstream_to_hf_tensors,
)
from gsm8k_eval.models.sources import fetch_model, parse_source
from gsm8k_eval.models.tiny import TinyGemmaSpec, tiny_random_weights
from gsm8k_eval.tokenizer import TOKENIZER_FILE

__all__ = [
    "CONFIG_FILE",
    "DTYPES",
    "GEMMA3_PATTERN",
    "GEMMA3_SPM_TOKENIZER",
    "HF_GEMMA3_TEXT_DEFAULTS",
    "LAYOUT_VERSION",
    "MODEL_FILES",
    "SOURCE_FILE",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "LoadedModel",
    "ModelSource",
    "ModelSourceError",
    "TinyGemmaSpec",
    "convert_gguf",
    "convert_orbax",
    "copy_hf_layout",
    "fetch_model",
    "gemma3_hf_config",
    "gguf_hf_config",
    "gguf_tensors",
    "gguf_to_hf_name",
    "hf_text_config",
    "is_fetched",
    "load_model",
    "model_config_from_hf",
    "orbax_hf_config",
    "parse_source",
    "sentencepiece_tokenizer",
    "sha256_file",
    "tiny_random_weights",
    "upstream_to_hf_tensors",
]
