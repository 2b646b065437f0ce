"""The verdict is the brand's (issue 23 §1): identical means identical tokens and float32 logit
bits; a batch-invariant sampler that diverges fails the run (one line, after the report), stock
tunix is reported, never fatal."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from test_invariance import make_rows, write

from gsm8k_eval.invariance import check_invariance
from gsm8k_eval.verdict import VerdictError, verdict


def _flip_lowest_bit(value: float) -> float:
    """The float32 next to `value`: one bit of difference."""
    (bits,) = struct.unpack("<I", struct.pack("<f", value))
    return struct.unpack("<f", struct.pack("<I", bits ^ 1))[0]


def _planted(tmp_path: Path, sampler: str) -> Path:
    """bs1 and bs8 with identical tokens and text; one logit of one example differs by a bit."""
    rows = make_rows()
    other = [*rows]
    target = rows[2]
    logits = list(target.logits)
    logits[7] = _flip_lowest_bit(logits[7])
    other[2] = type(target)(target.id, target.response, logits, target.correct)
    out = tmp_path / f"{sampler}.json"
    paths = {1: write(tmp_path / sampler, 1, rows), 8: write(tmp_path / sampler, 8, other)}
    check_invariance(paths, out, checkpoint="base", sampler=sampler)
    return out


def test_a_one_bit_logit_difference_is_not_invariant(tmp_path: Path) -> None:
    data = json.loads(_planted(tmp_path, "fixed").read_text())
    assert data["token_invariant"] is True
    assert (data["invariant"], data["logit_invariant"], data["verdict"]) == (
        False,
        False,
        "divergent",
    )
    comparison = data["comparisons"][0]
    assert comparison["identical_tokens"] == 6 and comparison["identical_logits"] == 5
    assert (comparison["token_divergences"], comparison["logit_divergences"]) == (0, 1)
    (divergence,) = comparison["divergences"]
    assert (divergence["kind"], divergence["first_logit_index"]) == ("logits", 7)
    assert divergence["first_token_index"] is None
    assert "1 in logits only" in data["message"]


def test_runs_without_logits_are_judged_by_tokens(tmp_path: Path) -> None:
    rows = [type(r)(r.id, r.response, [], r.correct) for r in make_rows()]
    out = tmp_path / "inv.json"
    paths = {1: write(tmp_path, 1, rows), 2: write(tmp_path, 2, rows)}
    data = check_invariance(paths, out, checkpoint="base", sampler="fixed").to_dict()
    assert (data["invariant"], data["logit_invariant"], data["logits_compared"]) == (True, None, 0)


def test_fixed_divergence_fails_the_verdict_after_writing_it(tmp_path: Path) -> None:
    path = _planted(tmp_path, "fixed")
    out = tmp_path / "verdict.json"
    with pytest.raises(VerdictError, match=r"base/fixed: batch size 8: 1 of 6") as raised:
        verdict([path], out)
    assert "\n" not in str(raised.value)
    assert json.loads(out.read_text())["passed"] is False


def test_tunix_divergence_is_reported_not_fatal(tmp_path: Path) -> None:
    result = verdict([_planted(tmp_path, "tunix")], tmp_path / "verdict.json")
    assert result["passed"] is True and result["failures"] == []
    assert result["checks"][0]["verdict"] == "batch-dependent"


def test_fail_on_divergence_false_only_warns(tmp_path: Path) -> None:
    result = verdict([_planted(tmp_path, "fixed")], tmp_path / "v.json", fail_on_divergence=False)
    assert result["passed"] is True and len(result["warnings"]) == 1


def test_the_verdict_command_fails_with_one_line(tmp_path: Path) -> None:
    fixed, tunix = _planted(tmp_path, "fixed"), _planted(tmp_path, "tunix")
    command = [sys.executable, "-m", "gsm8k_eval", "verdict", "--out", str(tmp_path / "v.json")]
    failed = subprocess.run(
        [*command, "--invariance", str(fixed), str(tunix)], capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert (
        failed.stderr.strip()
        .splitlines()[-1]
        .startswith("gsm8k-eval verdict: error: batch invariance violated: base/fixed:")
    )
    assert "tunix" not in failed.stderr.strip().splitlines()[-1]
    passed = subprocess.run([*command, "--invariance", str(tunix)], capture_output=True, text=True)
    assert passed.returncode == 0, passed.stderr
