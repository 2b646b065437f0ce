"""Where every output of a run lives: all under `results/<run>/` (no command lines here)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from gsm8k_eval.config import PipelineConfig
from gsm8k_eval.evaluation.options import GENERATION_RECORD, GENERATIONS
from gsm8k_eval.parts import PARTS_DIR, part_labels

__all__ = ["GENERATIONS", "GENERATION_RECORD", "REPORT_NAME", "RESULTS", "RunPaths"]

RESULTS = "results"
REPORT_NAME = "gsm8k_eval_report.md"
PART_WILDCARD = "{part}"


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
        """Every full evaluation's summary (each sampler at its own batch sizes)."""
        return [
            self.summary(c, s, b)
            for c in cfg.checkpoint_names
            for s in cfg.samplers
            for b in cfg.batch_sizes_for(s)
        ]

    def spot_dir(self, checkpoint: str, sampler: str, batch_size: int | str) -> str:
        """A spot check's evaluation: the first `spot_check.examples` examples only."""
        return f"{self.root}/spot/{checkpoint}/{sampler}/bs{batch_size}"

    def spot_rollouts(self, cfg: PipelineConfig, checkpoint: str, sampler: str) -> list[str]:
        """The spot check rollouts of a checkpoint and sampler (none when it has no spot check)."""
        return [
            f"{self.spot_dir(checkpoint, sampler, b)}/rollouts.jsonl"
            for b in cfg.spot_check_sizes(sampler)
        ]

    def spot_argument(self, cfg: PipelineConfig, checkpoint: str, sampler: str) -> str:
        """`--spot-check BS=PATH` for `gsm8k-eval check-invariance`; empty without one."""
        sizes, paths = cfg.spot_check_sizes(sampler), self.spot_rollouts(cfg, checkpoint, sampler)
        pairs = zip(sizes, paths, strict=True)
        return " ".join(f"--spot-check {b}={shlex.quote(p)}" for b, p in pairs)

    def all_invariance(self, cfg: PipelineConfig) -> list[str]:
        return [self.invariance(c, s) for c in cfg.checkpoint_names for s in cfg.samplers]

    def all_checkpoint_dirs(self, cfg: PipelineConfig) -> list[str]:
        return [self.checkpoint_dir(c) for c in cfg.checkpoint_names]

    def checkpoint_manifests(self, cfg: PipelineConfig) -> list[str]:
        return [f"{self.checkpoint_dir(c)}/manifest.json" for c in cfg.checkpoint_names]

    def checkpoint_rollouts(self, cfg: PipelineConfig, checkpoint: str, sampler: str) -> list[str]:
        """The full runs' rollouts of a checkpoint and sampler, one per batch size."""
        return [self.rollouts(checkpoint, sampler, b) for b in cfg.batch_sizes_for(sampler)]

    def rollouts_argument(self, cfg: PipelineConfig, checkpoint: str, sampler: str) -> str:
        """`BS=PATH …` for `gsm8k-eval check-invariance --rollouts`."""
        paths = self.checkpoint_rollouts(cfg, checkpoint, sampler)
        sizes = cfg.batch_sizes_for(sampler)
        return " ".join(f"{b}={shlex.quote(p)}" for b, p in zip(sizes, paths, strict=True))

    def reference_dir(self, checkpoint: str) -> str:
        return f"{self.root}/reference/{checkpoint}"

    def reference_rollouts(self, checkpoint: str) -> str:
        return f"{self.reference_dir(checkpoint)}/rollouts.jsonl"

    def reference_summary(self, checkpoint: str) -> str:
        return f"{self.reference_dir(checkpoint)}/summary.json"

    def all_reference_summaries(self, cfg: PipelineConfig) -> list[str]:
        """The PyTorch reference of every base checkpoint; none when `reference` is disabled."""
        return [self.reference_summary(c) for c in reference_checkpoints(cfg)]

    def fewshot_inputs(self, cfg: PipelineConfig) -> list[str]:
        return [self.dataset("train")] if cfg.prompt.needs_train_split else []


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


def reference_checkpoints(cfg: PipelineConfig) -> list[str]:
    """Checkpoints the PyTorch reference runs: the base-model ones, when it is enabled."""
    return [c.name for c in cfg.checkpoints if c.is_base] if cfg.reference.enabled else []


def report_templates(basedir: str) -> list[str]:
    """Every report template is an input: editing one regenerates the report."""
    return sorted(str(p) for p in (Path(basedir) / "report" / "templates").glob("*.j2"))
