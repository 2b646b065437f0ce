"""Typed pipeline configuration, built from the schema-validated Snakemake config."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gsm8k_eval import resources

SCHEMA_PATH = resources.schema_path()
BASE_CHECKPOINT = "base"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


@dataclass(frozen=True)
class ModelSpec:
    source: str
    revision: str | None = None
    name: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.source


@dataclass(frozen=True)
class DatasetSpec:
    source: str
    fewshot_source: str | None = None
    revision: str | None = None
    config_name: str = "main"
    test_sha256: str | None = None
    train_sha256: str | None = None

    def source_for(self, split: str) -> str:
        """The source of a split: the train split falls back to an hf: test source."""
        if split == "test":
            return self.source
        if self.fewshot_source:
            return self.fewshot_source
        if self.source.startswith("hf:"):
            return self.source
        raise ConfigError(
            "dataset.fewshot_source: required for few-shot prompts when dataset.source is a "
            f"local file ({self.source})"
        )

    def sha256_for(self, split: str) -> str | None:
        return self.test_sha256 if split == "test" else self.train_sha256


@dataclass(frozen=True)
class CheckpointSpec:
    name: str
    source: str = BASE_CHECKPOINT
    step: int | None = None

    @property
    def is_base(self) -> bool:
        return self.source == BASE_CHECKPOINT


@dataclass(frozen=True)
class LoraSpec:
    rank: int = 16
    alpha: float = 16.0
    module_path: str = ".*q_einsum|.*kv_einsum|.*gate_proj|.*down_proj|.*up_proj|.*attn_vec_einsum"


@dataclass(frozen=True)
class SamplingSpec:
    sampler: str = "fixed"
    dtype: str = "float32"
    temperature: float = 0
    max_generation_steps: int = 768
    max_prompt_length: int = 1024
    eos_tokens: tuple[int, ...] = (1, 106)
    decode_rows: int = 8


@dataclass(frozen=True)
class PromptSpec:
    template: str = "chat"
    num_shots: int = 8
    seed: int = 1234

    @property
    def needs_train_split(self) -> bool:
        return self.template == "fewshot" and self.num_shots > 0


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the DAG needs, with the schema's defaults already applied."""

    run_name: str
    model: ModelSpec
    dataset: DatasetSpec
    limit: int | None
    checkpoints: tuple[CheckpointSpec, ...]
    lora: LoraSpec
    batch_sizes: tuple[int, ...]
    sampling: SamplingSpec
    prompt: PromptSpec
    primary_method: str = "strict"
    device: str = "auto"
    shard_size: int = 64
    fail_on_divergence: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> PipelineConfig:
        """Build from a validated config dict (defaults filled in by the schema)."""
        checkpoints = tuple(CheckpointSpec(**c) for c in config["checkpoints"])
        _reject_duplicates([c.name for c in checkpoints], "checkpoints[].name")
        sampling = dict(config["sampling"])
        sampling["eos_tokens"] = tuple(sampling["eos_tokens"])
        return cls(
            run_name=config["run_name"],
            model=ModelSpec(**config["model"]),
            dataset=DatasetSpec(**config["dataset"]),
            limit=config["limit"],
            checkpoints=checkpoints,
            lora=LoraSpec(**config["lora"]),
            batch_sizes=tuple(sorted(config["batch_sizes"])),
            sampling=SamplingSpec(**sampling),
            prompt=PromptSpec(**config["prompt"]),
            primary_method=config["scoring"]["primary"],
            device=config["evaluation"]["device"],
            shard_size=config["evaluation"]["shard_size"],
            fail_on_divergence=config["invariance"]["fail_on_divergence"],
            raw=config,
        )

    def checkpoint(self, name: str) -> CheckpointSpec:
        for spec in self.checkpoints:
            if spec.name == name:
                return spec
        raise ConfigError(f"checkpoints: no checkpoint named {name!r}")

    @property
    def checkpoint_names(self) -> list[str]:
        return [c.name for c in self.checkpoints]

    def evaluation_hash(self) -> str:
        """Hash of every setting that changes rollouts (not the batch sizes or checkpoints)."""
        relevant = {
            "model": asdict(self.model),
            "dataset": asdict(self.dataset),
            "limit": self.limit,
            "lora": asdict(self.lora),
            "sampling": asdict(self.sampling),
            "prompt": asdict(self.prompt),
            "primary_method": self.primary_method,
        }
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _reject_duplicates(names: list[str], key: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{key}: duplicate name {name!r}")
        seen.add(name)


def coerce_cli_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """Turn `--config batch_sizes=[1,8]` strings into integers before validation.

    Snakemake parses list items given on the command line as strings; anything that is not
    an integer is left alone for the schema to reject with the key's name.
    """
    for key in ("batch_sizes",):
        if isinstance(config.get(key), str):
            config[key] = yaml.safe_load(config[key])
        if isinstance(config.get(key), list):
            config[key] = [_maybe_int(v) for v in config[key]]
    sampling = config.get("sampling")
    if isinstance(sampling, dict) and isinstance(sampling.get("eos_tokens"), list):
        sampling["eos_tokens"] = [_maybe_int(v) for v in sampling["eos_tokens"]]
    if isinstance(config.get("limit"), str):
        config["limit"] = _maybe_int(config["limit"])
    return config


def _maybe_int(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def load_config(config: dict[str, Any]) -> PipelineConfig:
    """Coerce, validate against the JSON schema (filling defaults) and type a config."""
    from snakemake.utils import validate

    coerce_cli_overrides(config)
    try:
        validate(config, str(SCHEMA_PATH), set_default=True)
    except Exception as error:  # snakemake wraps jsonschema errors in WorkflowError
        raise ConfigError(_first_line_with_key(str(error))) from error
    return PipelineConfig.from_dict(config)


def _first_line_with_key(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    detail = [line for line in lines if "Error" in line or "On instance" in line]
    return " | ".join(detail or lines[:3])


def load_config_file(path: Path) -> PipelineConfig:
    """Load, validate and type a YAML config file (for the CLI and tests)."""
    with open(path, encoding="utf-8") as handle:
        return load_config(yaml.safe_load(handle) or {})
