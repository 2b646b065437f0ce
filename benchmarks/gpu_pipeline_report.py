"""Collect a `configs/gpu-smoke.yaml` run into one JSON: each evaluate job's times and rates
(from its summary.json) and the invariance verdicts (`benchmarks/gpu_pipeline.sh` calls it).

    python benchmarks/gpu_pipeline_report.py results/gpu-smoke OUT.json --wall SECONDS
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

KEYS = (
    "wall_seconds",
    "compile_seconds",
    "generation_seconds",
    "generated_tokens",
    "tokens_per_second",
    "decode_tokens_per_second",
    "prefill_tokens_per_second",
    "slot_utilization",
    "accuracy",
    "determinism",
)
VERDICT_KEYS = ("invariant", "message", "identical_tokens", "identical_logits", "num_examples")


def pick(data: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The first occurrence of each key anywhere in nested dicts."""
    found: dict[str, Any] = {}
    stack = [data]
    while stack:
        node = stack.pop(0)
        if isinstance(node, dict):
            for key, value in node.items():
                if key in keys and key not in found:
                    found[key] = value
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def collect(run: Path) -> dict[str, Any]:
    """Every evaluate summary and invariance verdict under the run folder."""
    jobs = {
        str(path.parent.relative_to(run / "eval")): pick(json.loads(path.read_text()), KEYS)
        for path in sorted((run / "eval").glob("*/*/bs*/summary.json"))
    }
    verdicts = {
        str(path.relative_to(run / "invariance").with_suffix("")): pick(
            json.loads(path.read_text()), VERDICT_KEYS
        )
        for path in sorted((run / "invariance").glob("*/*.json"))
    }
    return {"jobs": jobs, "invariance": verdicts}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--wall", type=float, default=None, help="the whole run's seconds")
    parser.add_argument("--status", type=int, default=0, help="snakemake's exit status")
    args = parser.parse_args(argv)
    data = collect(args.run) | {"pipeline_wall_seconds": args.wall, "status": args.status}
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(json.dumps({"status": args.status, "invariance": data["invariance"]}, sort_keys=True))


if __name__ == "__main__":
    main()
