"""The run's verdict: the last stage, after the report is rendered (the evidence is there).

It reads every invariance JSON of the run; a sampler that claims batch invariance (`fixed`,
`static`) but diverged, in tokens, text or float32 logit bits, fails the run with a one-line
reason unless `invariance.fail_on_divergence` is false (then it warns). Stock tunix is the
negative control: its divergences are reported, never fatal. The verdict is written as JSON:

```
{passed, fail_on_divergence, failures: [str], warnings: [str],
 checks: [{path, checkpoint, sampler, verdict, invariant, token_invariant, logit_invariant,
           spot_checks: ["batch size B: spot check: N of M examples"]}]}
```

A spot check (invariance.py) counts like any comparison, on the examples it covers: its failure
line names its scope (the invariance message says "spot check: N of M examples").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gsm8k_eval.invariance import claims_invariance
from gsm8k_eval.io import read_json, write_json

log = logging.getLogger(__name__)


class VerdictError(RuntimeError):
    """A batch-invariant sampler diverged (the message is one line)."""


def _reason(path: Path, data: dict[str, Any]) -> str:
    return f"{data.get('checkpoint')}/{data.get('sampler')}: {data.get('message')} ({path})"


def verdict(
    invariance_paths: Sequence[Path], out: Path, *, fail_on_divergence: bool = True
) -> dict[str, Any]:
    """Write the verdict JSON to `out`; raise `VerdictError` (after writing) when it fails."""
    checks, failures, warnings = [], [], []
    for path in map(Path, invariance_paths):
        data = read_json(path)
        sampler = data.get("sampler")
        checks.append(
            {
                "path": str(path),
                "checkpoint": data.get("checkpoint"),
                "sampler": sampler,
                "verdict": data.get("verdict"),
                "invariant": data["invariant"],
                "token_invariant": data.get("token_invariant"),
                "logit_invariant": data.get("logit_invariant"),
                "spot_checks": [
                    f"batch size {c['batch_size']}: {c['scope']}"
                    for c in data.get("comparisons", [])
                    if c.get("spot_check")
                ],
            }
        )
        if data["invariant"]:
            continue
        if claims_invariance(sampler):
            (failures if fail_on_divergence else warnings).append(_reason(path, data))
        else:
            log.info("negative control %s: %s", sampler, _reason(path, data))
    result = {
        "passed": not failures,
        "fail_on_divergence": fail_on_divergence,
        "failures": failures,
        "warnings": warnings,
        "checks": checks,
    }
    write_json(Path(out), result)
    for warning in warnings:
        log.warning("batch invariance violated (invariance.fail_on_divergence is off): %s", warning)
    if failures:
        raise VerdictError(
            f"batch invariance violated: {'; '.join(failures)} (the report shows the "
            "divergences; set invariance.fail_on_divergence: false to only warn)"
        )
    return result
