"""Our lm-eval methods against real lm-eval: tests/data/lm_eval_gsm8k_fixture.jsonl holds what
lm-eval's own gsm8k filters and `exact_match` metric made of a few hundred responses (generated
once with tests/data/make_lm_eval_fixture.py in a throwaway venv; lm_eval is not installed here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gsm8k_eval.scoring import extract, normalise, score_response

FIXTURE = Path(__file__).parent / "data" / "lm_eval_gsm8k_fixture.jsonl"
METHODS = ("strict-match", "flexible-extract")


def load() -> tuple[dict, list[dict]]:
    header, *rows = (json.loads(line) for line in FIXTURE.read_text("utf-8").splitlines())
    return header["header"], rows


HEADER, ROWS = load()


def test_fixture_is_real_lm_eval_output_of_a_few_hundred_varied_cases() -> None:
    assert HEADER["lm_eval_version"].startswith("0.4.") and HEADER["task"] == "gsm8k"
    assert len(ROWS) == HEADER["cases"] >= 300
    outcomes = {tuple(r["exact_match"][m] for m in METHODS) for r in ROWS}
    assert outcomes == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)}  # every combination
    assert {r["filtered"]["strict-match"] for r in ROWS} >= {"[invalid]", "18.00", "-7"}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['kind']}:{r['response'][-24:]!r}")
def test_grading_equals_lm_eval(row: dict) -> None:
    answer = row["doc"]["answer"]
    gold = normalise(answer.rsplit("####", 1)[-1]) or "not a number"
    scored = score_response(row["response"], gold, reference=answer)
    for method in METHODS:
        assert extract(row["response"], method) == row["filtered"][method], method
        assert scored.extracted[method] == row["filtered"][method], method
        assert scored.correct_by_method[method] is bool(row["exact_match"][method]), method
