"""XLA flag variants (issue 21 item 4): throughput and across-process bit equality of each.

XLA_FLAGS must be set before JAX starts, so every variant runs in its own worker processes
(two per variant, with the same flags). Each worker: the engine on the uniform workload at all
rows in flight (best of 3 timed runs, under the measurement lock so timed runs of concurrent
workers never overlap; compilation of other workers may run meanwhile), the digests (tokens +
float32 logit bits) of every output, and the first prompts again at bs 1. Workers run up to
`parallel` at a time; `shared_autotune`'s second process starts after the first wrote its
autotune results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpubench.common import log

DETERMINISTIC_OPS = "--xla_gpu_deterministic_ops=true"
AUTOTUNE_OFF = "--xla_gpu_autotune_level=0"
VARIANTS: dict[str, tuple[str, ...]] = {
    "flags": (DETERMINISTIC_OPS, AUTOTUNE_OFF),  # what the pipeline uses today
    "deterministic_ops": (DETERMINISTIC_OPS,),
    "autotune_off": (AUTOTUNE_OFF,),
    "none": (),
    "shared_autotune": (),  # + dump (first process) / load (second) of autotune results
    "deterministic_ops+shared_autotune": (DETERMINISTIC_OPS,),
}
DEFAULT_VARIANTS = "flags,deterministic_ops,autotune_off,none,shared_autotune"


@dataclass
class Job:
    """One worker process: a variant's `index`-th process."""

    variant: str
    index: int
    out: Path
    flags: tuple[str, ...]
    after: Path | None = None  # start only once this file exists (shared autotune results)
    process: subprocess.Popen | None = None
    started: float = 0.0


def worker_flags(
    variant: str, index: int, autotune_file: Path
) -> tuple[tuple[str, ...], Path | None]:
    """XLA flags of a variant's `index`-th process, and the file it must wait for."""
    flags = VARIANTS[variant]
    if not variant.endswith("shared_autotune"):
        return flags, None
    if index == 0:
        return (*flags, f"--xla_gpu_dump_autotune_results_to={autotune_file}"), None
    return (*flags, f"--xla_gpu_load_autotune_results_from={autotune_file}"), autotune_file


class Variants:
    """All variants' workers (two each), `parallel` at a time, scheduled by a background thread
    (started while this process runs its own sections); `result()` waits and compares."""

    def __init__(
        self,
        names: list[str],
        worker_argv: list[str],
        tmp: Path,
        parallel: int,
        deadline: float,
        mem_fraction: float,
    ) -> None:
        self.names, self.jobs = names, []
        for name in names:
            autotune_file = tmp / f"autotune-{name.replace('+', '-')}.textproto"
            for index in range(2):
                flags, after = worker_flags(name, index, autotune_file)
                self.jobs.append(Job(name, index, tmp / f"{name}-{index}.json", flags, after))
        # autotune dumps first, their loaders last: they wait for the dump
        self.jobs.sort(
            key=lambda j: (
                j.after is not None,
                not (j.index == 0 and j.flags != VARIANTS[j.variant]),
            )
        )
        args = (self.jobs, worker_argv, parallel, deadline, mem_fraction)
        self.thread = threading.Thread(target=_schedule, args=args, daemon=True)
        self.thread.start()

    def result(self) -> dict[str, Any]:
        """Wait for the workers (or the deadline) and compare each variant's processes."""
        self.thread.join()
        return {n: summarize(n, [j for j in self.jobs if j.variant == n]) for n in self.names}


def _schedule(
    jobs: list[Job], argv: list[str], parallel: int, deadline: float, mem_fraction: float
) -> None:
    """Start jobs as slots free up (a job waiting for a file waits); kill all at `deadline`."""
    base = os.environ.get("GPU_BENCH_BASE_XLA_FLAGS", "")
    waiting, running = list(jobs), []
    while waiting or running:
        running = [j for j in running if j.process.poll() is None]
        if time.monotonic() > deadline:
            for j in running:
                j.process.kill()
            log(f"flag variants: deadline, {len(running)} killed, {len(waiting)} not started")
            return
        for job in list(waiting):
            if len(running) >= parallel:
                break
            if job.after is not None and not _dumped(job, jobs):
                continue
            env = dict(os.environ, XLA_FLAGS=" ".join([base, *job.flags]).strip())
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(mem_fraction)
            command = [sys.executable, *argv, "--worker", job.variant, "--worker-out", str(job.out)]
            job.process, job.started = subprocess.Popen(command, env=env), time.monotonic()
            waiting.remove(job)
            running.append(job)
            flags = env["XLA_FLAGS"] or "(no flags)"
            log(f"flag variant {job.variant} #{job.index} started: {flags}")
        time.sleep(0.5)


def _dumped(job: Job, jobs: list[Job]) -> bool:
    """The dumping process of the variant has finished (its file is complete then)."""
    first = next(j for j in jobs if j.variant == job.variant and j.index == 0)
    return first.process is not None and first.process.poll() is not None


def summarize(name: str, jobs: list[Job]) -> dict[str, Any]:
    """Throughput of each process and whether their outputs are bitwise identical."""
    results = [json.loads(j.out.read_text()) if j.out.exists() else None for j in jobs]
    done = [r for r in results if r]
    out: dict[str, Any] = {
        "xla_flags": [list(j.flags) for j in jobs],
        "processes": [r and {k: v for k, v in r.items() if k != "digests"} for r in results],
    }
    if len(done) < 2:
        out["error"] = "fewer than two processes finished"
        return out
    a, b = done[0]["digests"], done[1]["digests"]
    out["differ_across_processes"] = sum(x != y for x, y in zip(a["all"], b["all"], strict=True))
    out["invariant_across_processes"] = a["all"] == b["all"]
    out["invariant_in_process"] = all(r["bs1_identical"] for r in done)
    out["tokens_per_s"] = max(r["tokens_per_s"] for r in done)
    out["compile_s"] = [r["best_run"].get("warmup_compile_s") for r in done]
    out["compile_s"] = [r["best_run"].get("warmup_compile_s") for r in done]
    out["digests"] = a["all"]
    return out


def worker(run_uniform: Any, out: Path) -> None:
    """A worker's body: `run_uniform()` returns its result dict; written as JSON to `out`."""
    started = time.perf_counter()
    result = run_uniform()
    result["process_seconds"] = round(time.perf_counter() - started, 1)
    result["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    out.write_text(json.dumps(result))
