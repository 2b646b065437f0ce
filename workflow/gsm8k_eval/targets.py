"""Paths and per-job parameters of the Snakemake DAG, derived from the typed config."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gsm8k_eval.config import PipelineConfig
from gsm8k_eval.evaluation.options import GENERATION_RECORD, GENERATIONS
from gsm8k_eval.invariance import BATCH_DEPENDENT_SAMPLERS
from gsm8k_eval.parts import PARTS_DIR, part_labels

RESULTS = "results"
REPORT_NAME = "gsm8k_eval_report.md"
EMBEDDED_CONFIG = "config.yaml"
EMBEDDED_RUN = "demo"
_RUN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def default_run(configfiles: Sequence[str | Path]) -> str:
    """`run` when the config leaves it null: the last config file's name, else the demo's."""
    if not configfiles:
        return EMBEDDED_RUN
    name = _RUN_NAME.sub("-", Path(configfiles[-1]).stem).strip("-.") or EMBEDDED_RUN
    return name if name[0].isalnum() else f"run-{name}"


@dataclass(frozen=True)
class RunPaths:
    """Every output path of one run, all under `results/<run>/`."""

    run: str

    @property
    def root(self) -> str:
        return f"{RESULTS}/{self.run}"

    @property
    def logs(self) -> str:
        return f"{self.root}/logs"

    def log(self, name: str) -> str:
        """A job's log file (`name` may hold wildcards, e.g. `evaluate/{checkpoint}`)."""
        return f"{self.logs}/{name}.log"

    @property
    def report(self) -> str:
        return f"{self.root}/report/{REPORT_NAME}"

    @property
    def figures(self) -> str:
        return f"{self.root}/report/figures"

    @property
    def verdict(self) -> str:
        return f"{self.root}/verdict.json"

    @property
    def owner(self) -> str:
        return f"{self.root}/run.json"

    def dataset(self, split: str) -> str:
        return f"{self.root}/data/gsm8k_{split}.jsonl"

    def dataset_manifest(self, split: str) -> str:
        return f"{self.root}/data/gsm8k_{split}.manifest.json"

    def model_dir(self) -> str:
        return f"{self.root}/model"

    def checkpoint_dir(self, checkpoint: str) -> str:
        return f"{self.root}/checkpoints/{checkpoint}"

    def eval_dir(self, checkpoint: str, sampler: str, batch_size: int | str) -> str:
        return f"{self.root}/eval/{checkpoint}/{sampler}/bs{batch_size}"

    def part_dir(self, checkpoint: str, sampler: str, batch_size: int | str, part: str) -> str:
        """Folder of one part of an evaluation split over jobs (evaluation.parallel_jobs)."""
        return part_dir(self.eval_dir(checkpoint, sampler, batch_size), part)

    def compilation_cache(self, cfg: PipelineConfig) -> str | None:
        """The JAX compilation cache folder (`<run>` filled in), or None when off."""
        path = cfg.compilation_cache
        return None if path is None else path.replace("<run>", self.run)

    def generations(self, folder: str) -> str:
        """What the model produced in an evaluation's (or the reference's) folder."""
        return f"{folder}/{GENERATIONS}"

    def generation_record(self, folder: str) -> str:
        return f"{folder}/{GENERATION_RECORD}"

    def rollouts(self, checkpoint: str, sampler: str, batch_size: int | str) -> str:
        return f"{self.eval_dir(checkpoint, sampler, batch_size)}/rollouts.jsonl"

    def summary(self, checkpoint: str, sampler: str, batch_size: int | str) -> str:
        return f"{self.eval_dir(checkpoint, sampler, batch_size)}/summary.json"

    def invariance(self, checkpoint: str, sampler: str) -> str:
        return f"{self.root}/invariance/{checkpoint}/{sampler}.json"

    def all_summaries(self, cfg: PipelineConfig) -> list[str]:
        return [
            self.summary(c, s, b)
            for c in cfg.checkpoint_names
            for s in cfg.samplers
            for b in cfg.batch_sizes
        ]

    def all_invariance(self, cfg: PipelineConfig) -> list[str]:
        return [self.invariance(c, s) for c in cfg.checkpoint_names for s in cfg.samplers]

    def all_checkpoint_dirs(self, cfg: PipelineConfig) -> list[str]:
        return [self.checkpoint_dir(c) for c in cfg.checkpoint_names]

    def checkpoint_manifests(self, cfg: PipelineConfig) -> list[str]:
        return [f"{self.checkpoint_dir(c)}/manifest.json" for c in cfg.checkpoint_names]

    def checkpoint_rollouts(self, cfg: PipelineConfig, checkpoint: str, sampler: str) -> list[str]:
        return [self.rollouts(checkpoint, sampler, b) for b in cfg.batch_sizes]

    def rollouts_argument(self, cfg: PipelineConfig, checkpoint: str, sampler: str) -> str:
        """`BS=PATH …` for `gsm8k-eval check-invariance --rollouts`."""
        paths = self.checkpoint_rollouts(cfg, checkpoint, sampler)
        return " ".join(
            f"{b}={shlex.quote(p)}" for b, p in zip(cfg.batch_sizes, paths, strict=True)
        )

    def reference_dir(self, checkpoint: str) -> str:
        return f"{self.root}/reference/{checkpoint}"

    def reference_rollouts(self, checkpoint: str) -> str:
        return f"{self.reference_dir(checkpoint)}/rollouts.jsonl"

    def reference_summary(self, checkpoint: str) -> str:
        return f"{self.reference_dir(checkpoint)}/summary.json"

    def all_reference_summaries(self, cfg: PipelineConfig) -> list[str]:
        """The PyTorch reference of every base checkpoint; none when `reference` is disabled."""
        return [self.reference_summary(c) for c in reference_checkpoints(cfg)]

    def reference_arguments(self, cfg: PipelineConfig) -> str:
        """The config-derived flags of `gsm8k-eval reference` (a param: changing one reruns)."""
        r, s, p = cfg.reference, cfg.sampling, cfg.prompt
        flags: list[tuple[str, object]] = [
            ("--dtype", r.dtype),
            ("--batch-size", r.batch_size),
            ("--device", r.device),
            ("--max-new-tokens", s.max_generation_steps),
            ("--max-prompt-length", s.max_prompt_length),
            ("--eos-tokens", ",".join(str(t) for t in s.eos_tokens)),
            ("--prompt-template", p.template),
            ("--num-shots", p.num_shots),
            ("--prompt-seed", p.seed),
            ("--model-source", cfg.model.source),
        ]
        if cfg.limit is not None:
            flags.append(("--limit", cfg.limit))
        if p.needs_train_split:
            flags.append(("--fewshot-data", self.dataset("train")))
        return " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in flags)

    def fewshot_inputs(self, cfg: PipelineConfig) -> list[str]:
        return [self.dataset("train")] if cfg.prompt.needs_train_split else []

    def evaluate_arguments(self, cfg: PipelineConfig) -> str:
        """The config-derived flags of `gsm8k-eval evaluate` (a param: changing one reruns)."""
        flags = _evaluate_flags(cfg)
        if cfg.prompt.needs_train_split:
            flags.append(("--fewshot-data", self.dataset("train")))
        return " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in flags)


def check_owner(paths: RunPaths, configfiles: Sequence[str | Path]) -> None:
    """Refuse to let one config's run overwrite another's: results/<run>/run.json says whose."""
    owner = Path(paths.owner)
    if not owner.exists():
        return
    recorded = json.loads(owner.read_text(encoding="utf-8")).get("configfiles", [])
    mine = _config_identity(configfiles)
    if recorded != mine:
        raise ValueError(
            f"{paths.root}/ holds the results of {', '.join(recorded)}, not of "
            f"{', '.join(mine)}: set `run:` in your config (or --config run=NAME) to keep both, "
            f"or delete {paths.root}/ to replace them"
        )


def claim_run(paths: RunPaths, configfiles: Sequence[str | Path]) -> None:
    """Record which config files this run folder belongs to (at the start of a real run)."""
    check_owner(paths, configfiles)
    owner = Path(paths.owner)
    owner.parent.mkdir(parents=True, exist_ok=True)
    claim = {"configfiles": _config_identity(configfiles)}
    owner.write_text(json.dumps(claim, indent=1) + "\n", encoding="utf-8")


def _config_identity(configfiles: Sequence[str | Path]) -> list[str]:
    if not configfiles:
        return [f"<embedded {EMBEDDED_CONFIG}>"]
    here = Path.cwd().resolve()
    names = []
    for path in configfiles:
        resolved = Path(path).resolve()
        names.append(
            str(resolved.relative_to(here)) if resolved.is_relative_to(here) else str(resolved)
        )
    return names


def fail_on_divergence_flag(cfg: PipelineConfig, sampler: str) -> str:
    """`--fail-on-divergence` when configured, for the batch-invariant samplers only."""
    strict = cfg.fail_on_divergence and sampler not in BATCH_DEPENDENT_SAMPLERS
    return "--fail-on-divergence" if strict else ""


def verdict_flag(cfg: PipelineConfig) -> str:
    """`gsm8k-eval verdict`: fail (the default) or only warn on a divergence."""
    return "--fail-on-divergence" if cfg.fail_on_divergence else "--no-fail-on-divergence"


PART_WILDCARD = "{part}"


def list_steps(source: str) -> tuple[int, ...]:
    """The step folders under a checkpoint source, for sweeps (`PipelineConfig.from_dict`).

    Imports the filesystem code (gcsfs) only when a sweep needs a listing."""
    from gsm8k_eval.checkpoints.listing import list_steps as listed
    from gsm8k_eval.checkpoints.manifest import CheckpointError
    from gsm8k_eval.sweeps import SweepError

    try:
        return listed(source)
    except CheckpointError as error:
        raise SweepError(f"checkpoints: listing the steps of a sweep failed: {error}") from error


def part_dir(eval_dir: str, part: str) -> str:
    """`<eval dir>/parts/<K-of-N>`: where one job of a split evaluation writes."""
    return f"{eval_dir}/{PARTS_DIR}/{part}"


def job_dir(cfg: PipelineConfig, eval_dir: str) -> str:
    """The folder an evaluate job writes: the evaluation's own, or with parallel jobs its part
    folder (holding the `{part}` wildcard)."""
    return eval_dir if cfg.parallel_jobs == 1 else part_dir(eval_dir, PART_WILDCARD)


def job_output(cfg: PipelineConfig, eval_dir: str, name: str) -> str:
    """File `name` (rollouts.jsonl, summary.json) of the folder an evaluate job writes."""
    return f"{job_dir(cfg, eval_dir)}/{name}"


def job_log(cfg: PipelineConfig, name: str) -> str:
    """An evaluate job's log name: one per part when the evaluation is split."""
    return name if cfg.parallel_jobs == 1 else f"{name}/part{PART_WILDCARD}"


def part_dirs(cfg: PipelineConfig, eval_dir: str) -> list[str]:
    """Every part folder of a split evaluation, in order (what gather joins)."""
    return [part_dir(eval_dir, label) for label in part_labels(cfg.parallel_jobs)]


def part_argument(part: str | None) -> str:
    """`--part K/N` for the job of part folder `K-of-N`; empty for a single job."""
    return f"--part {part.replace('-of-', '/')}" if part else ""


def cache_argument(paths: RunPaths, cfg: PipelineConfig) -> str:
    """`--compilation-cache DIR`, or empty when the cache is off."""
    path = paths.compilation_cache(cfg)
    return "" if path is None else f"--compilation-cache {shlex.quote(path)}"


def step_argument(cfg: PipelineConfig, checkpoint: str) -> str:
    """`--step` value: empty for the latest step (step 0 is a real step)."""
    step = cfg.checkpoint(checkpoint).step
    return "" if step is None else str(step)


def local_dataset_inputs(cfg: PipelineConfig, split: str) -> list[str]:
    """A local source file is an input, so editing it reruns the pipeline."""
    source = cfg.dataset.source_for(split)
    return [] if ":" in source.split("/")[0] else [source]


def _evaluate_flags(cfg: PipelineConfig) -> list[tuple[str, object]]:
    s, p, lora = cfg.sampling, cfg.prompt, cfg.lora
    flags: list[tuple[str, object]] = [
        ("--dtype", s.dtype),
        ("--max-new-tokens", s.max_generation_steps),
        ("--max-prompt-length", s.max_prompt_length),
        ("--eos-tokens", ",".join(str(t) for t in s.eos_tokens)),
        ("--decode-rows", s.decode_rows),
        ("--segment-steps", s.segment_steps),
        ("--prompt-template", p.template),
        ("--num-shots", p.num_shots),
        ("--prompt-seed", p.seed),
        ("--lora-rank", lora.rank),
        ("--lora-alpha", lora.alpha),
        ("--lora-module-path", lora.module_path),
        ("--shard-size", cfg.shard_size),
        ("--device", cfg.device),
        ("--model-source", cfg.model.source),
        ("--config-hash", cfg.evaluation_hash()),
    ]
    if cfg.limit is not None:
        flags.append(("--limit", cfg.limit))
    return flags


def reference_checkpoints(cfg: PipelineConfig) -> list[str]:
    """Checkpoints the PyTorch reference runs: the base-model ones, when it is enabled."""
    return [c.name for c in cfg.checkpoints if c.is_base] if cfg.reference.enabled else []


def reference_gpu_request(cfg: PipelineConfig) -> int:
    """GPUs a reference job asks for: cuda 1, cpu none, auto as the evaluate jobs."""
    return {"cuda": 1, "cpu": 0}.get(cfg.reference.device, gpu_request(cfg))


def gpu_request(cfg: PipelineConfig) -> int:
    """GPUs an evaluate job asks the scheduler for (none on the CPU or a TPU)."""
    return 0 if cfg.device in {"cpu", "tpu"} else 1


def reproduce_command(configfiles: list[str]) -> str:
    """The command line that regenerates the report."""
    parts = ["snakemake", "--cores", "all"]
    for path in configfiles:
        parts += ["--configfile", str(path)]
    return shlex.join(parts)


def report_templates(basedir: str) -> list[str]:
    """Every report template is an input: editing one regenerates the report."""
    return sorted(str(p) for p in (Path(basedir) / "report" / "templates").glob("*.j2"))


def report_code(basedir: str) -> list[str]:
    """The modules that compute the report's numbers and figures are inputs too."""
    package = Path(basedir) / "workflow" / "gsm8k_eval"
    return [*sorted(str(p) for p in (package / "report").glob("*.py")), str(package / "stats.py")]


def export_environment(basedir: str) -> None:
    """Make `python -m gsm8k_eval` in rule shells find this interpreter and this package."""
    package_root = str(Path(basedir) / "workflow")
    _prepend_env("PYTHONPATH", package_root)
    _prepend_env("PATH", str(Path(sys.executable).parent))


def _prepend_env(name: str, entry: str) -> None:
    parts = [p for p in os.environ.get(name, "").split(os.pathsep) if p]
    if entry not in parts:
        os.environ[name] = os.pathsep.join([entry, *parts])
