"""Typed pipeline configuration, built from the schema-validated Snakemake config."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from gsm8k_eval import schema, sweeps, validation
from gsm8k_eval.schema import SCHEMA_PATH
from gsm8k_eval.validation import ConfigError

__all__ = ["SCHEMA_PATH", "ConfigError", "PipelineConfig", "load_config"]

BASE_CHECKPOINT = "base"
# Keys that only label outputs: they never change a generated token.
DISPLAY_ONLY_MODEL_KEYS = ("name",)


@dataclass(frozen=True)
class ModelSpec:
    source: str
    revision: str | None
    name: str | None

    @property
    def display_name(self) -> str:
        return self.name or self.source


@dataclass(frozen=True)
class DatasetSpec:
    source: str
    fewshot_source: str | None
    revision: str | None
    config_name: str
    test_sha256: str | None
    train_sha256: str | None

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
    source: str
    step: int | None
    sweep: str | None = None  # the sweep entry this step came from (sweeps.py)

    @property
    def is_base(self) -> bool:
        return self.source == BASE_CHECKPOINT


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    module_path: str


@dataclass(frozen=True)
class SamplingSpec:
    dtype: str
    temperature: float
    max_generation_steps: int
    max_prompt_length: int
    eos_tokens: tuple[int, ...]
    decode_rows: int | str  # a number, or "auto" (resolved from the device: shapes.py)
    segment_steps: int | str
    prefill_rows: int | str
    top_k: int = schema.default_field("sampling.top_k")
    top_p: float = schema.default_field("sampling.top_p")
    num_samples: int = schema.default_field("sampling.num_samples")
    seed: int = schema.default_field("sampling.seed")

    @property
    def sampled(self) -> bool:
        """Whether tokens are drawn (temperature > 0) rather than chosen greedily."""
        return self.temperature > 0

    def generation_settings(self) -> dict[str, Any]:
        """The settings that change tokens: at temperature 0 the sampling keys change none, so
        they are left out (a greedy config's hash stays what it was before they existed)."""
        values = asdict(self)
        if not self.sampled:
            for key in SAMPLING_KEYS:
                values.pop(key)
        return values


# sampling.* keys of sampled evaluation, beside temperature (docs/sampled.md).
SAMPLING_KEYS = ("top_k", "top_p", "num_samples", "seed")


@dataclass(frozen=True)
class PromptSpec:
    template: str
    num_shots: int
    seed: int

    @property
    def needs_train_split(self) -> bool:
        return self.template == "fewshot" and self.num_shots > 0


@dataclass(frozen=True)
class SpotCheckSpec:
    """`spot_check:` the first `examples` examples at one more batch size (None: off)."""

    examples: int | None
    batch_size: int


@dataclass(frozen=True)
class ReferenceSpec:
    """The optional PyTorch reference stage (`reference:`)."""

    enabled: bool
    dtype: str
    batch_size: int
    device: str


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the DAG needs, with the schema's defaults already applied."""

    run: str | None
    run_name: str
    model: ModelSpec
    dataset: DatasetSpec
    limit: int | None
    checkpoints: tuple[CheckpointSpec, ...]
    lora: LoraSpec
    batch_sizes: tuple[int, ...]
    samplers: tuple[str, ...]
    sampling: SamplingSpec
    prompt: PromptSpec
    primary_method: str
    device: str
    shard_size: int
    fail_on_divergence: bool
    reference: ReferenceSpec
    parallel_jobs: int
    compilation_cache: str | None  # as configured (<run> not yet filled in)
    gpu_determinism: str = schema.default_field("evaluation.gpu_determinism")
    # per sampler, when `batch_sizes` is a mapping (else every sampler has `batch_sizes`)
    sampler_batch_sizes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    spot_check: SpotCheckSpec = field(
        default_factory=lambda: SpotCheckSpec(**schema.default("spot_check"))
    )
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(
        cls, config: dict[str, Any], list_steps: sweeps.StepLister | None = None
    ) -> PipelineConfig:
        """Build from a validated config dict (defaults filled in by the schema).

        `list_steps(source)`: the step folders of a checkpoint source, needed by sweeps with
        `steps: all` or `every` (the Snakefile passes `targets.list_steps`).
        """
        checkpoints = _checkpoints(config["checkpoints"], list_steps)
        _reject_duplicates([c.name for c in checkpoints], "checkpoints[].name")
        sampling = dict(config["sampling"])
        sampling.pop("sampler", None)  # deprecated: `samplers` (see apply_deprecations)
        sampling["eos_tokens"] = tuple(sampling["eos_tokens"])
        _check_sampling(sampling, config)
        return cls(
            run=config["run"],
            run_name=config["run_name"],
            model=ModelSpec(**config["model"]),
            dataset=DatasetSpec(**config["dataset"]),
            limit=config["limit"],
            checkpoints=checkpoints,
            lora=LoraSpec(**config["lora"]),
            batch_sizes=_all_batch_sizes(config["batch_sizes"]),
            samplers=tuple(config["samplers"]),
            sampling=SamplingSpec(**sampling),
            prompt=PromptSpec(**config["prompt"]),
            primary_method=config["scoring"]["primary"],
            device=config["evaluation"]["device"],
            shard_size=config["evaluation"]["shard_size"],
            fail_on_divergence=config["invariance"]["fail_on_divergence"],
            reference=_reference_spec(config["reference"], checkpoints),
            parallel_jobs=config["evaluation"]["parallel_jobs"],
            compilation_cache=config["evaluation"]["compilation_cache"],
            gpu_determinism=config["evaluation"]["gpu_determinism"],
            sampler_batch_sizes=_sampler_batch_sizes(config["batch_sizes"]),
            spot_check=SpotCheckSpec(**config["spot_check"]),
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

    def batch_sizes_for(self, sampler: str) -> tuple[int, ...]:
        """The batch sizes `sampler` is evaluated at on every example (sorted)."""
        return dict(self.sampler_batch_sizes).get(sampler, self.batch_sizes)

    def spot_check_sizes(self, sampler: str) -> tuple[int, ...]:
        """The spot check's batch size for `sampler`, when it has one: spot_check is on and
        the sampler's batch sizes do not include it (else its full run compares already)."""
        spot = self.spot_check
        if spot.examples is None or spot.batch_size in self.batch_sizes_for(sampler):
            return ()
        return (spot.batch_size,)

    @property
    def spot_check_examples(self) -> int | None:
        """How many examples (the first ones) a spot check evaluates: never more than `limit`."""
        examples = self.spot_check.examples
        if examples is None or self.limit is None:
            return examples
        return min(examples, self.limit)

    def evaluation_hash(self) -> str:
        """Hash of every setting that changes generations.

        Not the grading (`scoring.*`: the score stage's, never a reason to regenerate), not
        the batch sizes, samplers or checkpoints (they are wildcards), and none of the
        display-only keys (`run`, `run_name`, `model.name`): renaming a run must not rerun its
        evaluations.
        """
        model = {k: v for k, v in asdict(self.model).items() if k not in DISPLAY_ONLY_MODEL_KEYS}
        relevant = {
            "model": model,
            "dataset": asdict(self.dataset),
            "limit": self.limit,
            "lora": asdict(self.lora),
            "sampling": self.sampling.generation_settings(),
            "prompt": asdict(self.prompt),
        }
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _check_sampling(sampling: dict[str, Any], config: dict[str, Any]) -> None:
    """Sampled evaluation's constraints (evaluation/requests.py), as config errors."""
    from gsm8k_eval.evaluation.requests import check_sampling

    for sampler in config["samplers"]:
        try:
            check_sampling(sampling["temperature"], sampling["num_samples"], sampler)
        except ValueError as error:
            raise ConfigError(f"sampling.temperature/num_samples, samplers: {error}") from None
    if sampling["temperature"] > 0 and config["reference"]["enabled"]:
        raise ConfigError(
            "reference.enabled: the PyTorch reference decodes greedily; it cannot be compared "
            "with a sampled run (sampling.temperature > 0): disable it"
        )


def _all_batch_sizes(sizes: list[int] | dict[str, list[int]]) -> tuple[int, ...]:
    """Every batch size of the config (of any sampler, when given per sampler), sorted."""
    lists = sizes.values() if isinstance(sizes, dict) else [sizes]
    return tuple(sorted({bs for values in lists for bs in values}))


def _sampler_batch_sizes(
    sizes: list[int] | dict[str, list[int]],
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """`batch_sizes` given per sampler, as sorted tuples; () for one list."""
    if not isinstance(sizes, dict):
        return ()
    return tuple((sampler, tuple(sorted(values))) for sampler, values in sizes.items())


def _reference_spec(
    reference: dict[str, Any], checkpoints: tuple[CheckpointSpec, ...]
) -> ReferenceSpec:
    spec = ReferenceSpec(**reference)
    if spec.enabled and not any(c.is_base for c in checkpoints):
        raise ConfigError(
            "reference.enabled: the PyTorch reference runs the base model only (LoRA "
            "checkpoints are not supported): add a checkpoint with source: base"
        )
    return spec


def _checkpoints(
    entries: list[dict[str, Any]], list_steps: sweeps.StepLister | None
) -> tuple[CheckpointSpec, ...]:
    """The checkpoints of the validated config (defaults filled in), sweeps expanded to one
    checkpoint per step."""
    try:
        expanded = sweeps.expand(entries, list_steps)
    except sweeps.SweepError as error:
        raise ConfigError(str(error)) from error
    return tuple(CheckpointSpec(**entry) for entry in expanded)


def _reject_duplicates(names: list[str], key: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{key}: duplicate name {name!r}")
        seen.add(name)


def coerce_cli_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """Turn `--config` strings into the schema's types before validation (see schema.coerce),
    and map deprecated keys onto their replacements (see `apply_deprecations`)."""
    return apply_deprecations(schema.coerce(config))


def apply_deprecations(config: dict[str, Any]) -> dict[str, Any]:
    """`sampling.sampler: X` without `samplers` means `samplers: [X]` (with a FutureWarning).

    Runs before validation fills in defaults, so only keys the user wrote count. Setting both
    is fine when they agree (the deprecated key is ignored) and an error when they do not.
    """
    sampling = config.get("sampling")
    sampler = sampling.get("sampler") if isinstance(sampling, dict) else None
    if sampler is None:
        return config
    if "samplers" not in config:
        config["samplers"] = [sampler]
        warnings.warn(
            f"sampling.sampler is deprecated: use `samplers: [{sampler}]` (a list: the DAG "
            "evaluates every sampler listed); treating it as that",
            FutureWarning,
            stacklevel=2,
        )
    elif isinstance(config["samplers"], list) and sampler not in config["samplers"]:
        raise ConfigError(
            f"sampling.sampler ({sampler!r}, deprecated) disagrees with samplers "
            f"({config['samplers']!r}): remove sampling.sampler"
        )
    return config


def load_config(
    config: dict[str, Any],
    list_steps: sweeps.StepLister | None = None,
    *,
    default_run: str | None = None,
    exit_on_error: bool = False,
) -> PipelineConfig:
    """Coerce, validate against the JSON schema (filling defaults, in place) and type a config
    (`list_steps`: see `PipelineConfig.from_dict`); the Snakefile's one way in.

    `default_run`: `run` where the config leaves it null. `exit_on_error`: a config the schema
    rejects exits with only its error lines (`validation.validate_or_exit`: Snakemake would
    add a traceback to an exception) instead of raising `ConfigError`."""
    coerce_cli_overrides(config)
    (validation.validate_or_exit if exit_on_error else validation.validate_config)(config)
    if config["run"] is None:
        config["run"] = default_run
    return PipelineConfig.from_dict(config, list_steps)
