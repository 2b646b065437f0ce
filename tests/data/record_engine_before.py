"""Record this CPU's entry of `engine_before_prefill_rows.json`: the tokens and float32 logit
bits of the engine before batched prefill existed (commit a49d36d), on the tiny Gemma 3 models
and prompts of `tests/test_engine.py`, at bs 3. Run with that commit's package and tests:

    git worktree add /tmp/a49 a49d36d && cd /tmp/a49
    PYTHONPATH=workflow:tests:$MAIN/tests JAX_PLATFORMS=cpu $MAIN/.venv/bin/python \\
        $MAIN/tests/data/record_engine_before.py $MAIN/tests/data/engine_before_prefill_rows.json
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from recorded_bits import bits, cpu_kind
from test_engine import engine
from test_sampler import LENGTHS, random_prompts, tiny_model

import gsm8k_eval


def main(out: Path) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=Path(gsm8k_eval.__file__).parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    entry: dict = {"commit": commit}
    for dtype in ("float32", "bfloat16"):
        prompts = random_prompts(LENGTHS, seed=1)
        entry[dtype] = bits(engine(tiny_model(dtype)).generate(prompts, max_in_flight=3))
    recordings = json.loads(out.read_text()) if out.exists() else {}
    recordings[cpu_kind()] = entry
    out.write_text(json.dumps(recordings))
    print(f"recorded {cpu_kind()} from {commit}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
