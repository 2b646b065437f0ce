"""Tests for gsm8k_eval.invariance (synthetic rollouts; tokens are the response's code points)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from gsm8k_eval.invariance import (
    BatchInvarianceError,
    RolloutMismatchError,
    check_invariance,
    first_difference,
)


@dataclass
class Row:
    """A minimal rollout line."""

    id: int
    response: str
    logits: list[float]
    correct: bool
    checkpoint: str = "base"

    def to_json(self, batch_size: int) -> dict:
        return {
            "id": self.id,
            "question": f"Question {self.id}: how many apples?",
            "prompt": "Q: ...",
            "response": self.response,
            "tokens": [ord(c) for c in self.response],
            "extracted_answer": None,
            "gold": "1",
            "correct": self.correct,
            "extracted": {},
            "correct_by_method": {},
            "num_steps": len(self.response),
            "stop_reason": "eos",
            "token_logits": self.logits,
            "batch_size": batch_size,
            "checkpoint": self.checkpoint,
        }


def make_rows(n: int = 6) -> list[Row]:
    rows = []
    for i in range(n):
        text = f"Step one gives {i * 3} apples. The answer is {i + 10}."
        logits = [10.0 + 0.25 * j + i for j in range(len(text))]
        rows.append(Row(i, text, logits, correct=i % 2 == 0))
    return rows


def write(tmp: Path, batch_size: int, rows: list[Row]) -> Path:
    path = tmp / f"bs{batch_size}" / "rollouts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r.to_json(batch_size)) + "\n" for r in rows))
    return path


def diverge(row: Row, k: int, tail: str, logit: float, correct: bool) -> Row:
    """Keep the first k characters/tokens, then continue with `tail`; logit at k is `logit`."""
    text = row.response[:k] + tail
    logits = row.logits[:k] + [logit] + [1.0] * (len(tail) - 1)
    return replace(row, response=text, logits=logits, correct=correct)


def test_identical_runs_are_fully_invariant(tmp_path: Path) -> None:
    rows = make_rows()
    paths = {1: write(tmp_path, 1, rows), 4: write(tmp_path, 4, rows), 2: write(tmp_path, 2, rows)}
    out = tmp_path / "inv.json"
    result = check_invariance(paths, out, checkpoint="base", fail_on_divergence=True)
    data = json.loads(out.read_text())
    assert result.invariant and data["invariant"] is True
    assert data["reference_batch_size"] == 1 and data["batch_sizes"] == [1, 2, 4]
    assert [c["batch_size"] for c in data["comparisons"]] == [2, 4]
    for comp in data["comparisons"]:
        assert comp["identical_text_rate"] == 1.0
        assert comp["identical_token_rate"] == 1.0
        assert comp["identical_logits"] == len(rows)
        assert comp["accuracy_delta"] == 0.0
        assert comp["correctness_flips"] == 0
        assert comp["divergences"] == []


def test_the_sampler_labels_the_result(tmp_path: Path) -> None:
    rows = make_rows()
    paths = {1: write(tmp_path, 1, rows), 8: write(tmp_path, 8, rows)}
    check_invariance(paths, tmp_path / "a.json", checkpoint="base", sampler="tunix")
    assert json.loads((tmp_path / "a.json").read_text())["sampler"] == "tunix"
    check_invariance(paths, tmp_path / "b.json", checkpoint="base")
    assert json.loads((tmp_path / "b.json").read_text())["sampler"] is None


def test_planted_divergence_reported_at_index_k(tmp_path: Path) -> None:
    rows = make_rows()
    k = 17
    other = list(rows)
    # Example 2 was correct; the diverging run gets it wrong.
    other[2] = diverge(rows[2], k, "XYZ the answer is 99.", logit=7.5, correct=False)
    out = tmp_path / "inv.json"
    check_invariance(
        {1: write(tmp_path, 1, rows), 8: write(tmp_path, 8, other)}, out, checkpoint="base"
    )
    comp = json.loads(out.read_text())["comparisons"][0]
    n = len(rows)
    assert comp["identical_text"] == n - 1 and comp["identical_tokens"] == n - 1
    assert comp["identical_text_rate"] == pytest.approx((n - 1) / n)
    assert comp["correctness_flips"] == 1 and comp["flips_to_incorrect"] == 1
    assert comp["accuracy_delta"] == pytest.approx(-1 / n)
    (div,) = comp["divergences"]
    assert div["id"] == 2
    assert div["first_token_index"] == k
    assert div["first_char_index"] == k
    assert div["reference_token"] == ord(rows[2].response[k])
    assert div["other_token"] == ord("X")
    assert div["reference_logit"] == rows[2].logits[k]
    assert div["other_logit"] == 7.5
    assert div["logit_delta"] == pytest.approx(7.5 - rows[2].logits[k])
    assert div["common_prefix_tail"].endswith(rows[2].response[:k][-10:])
    assert div["reference_continuation"].startswith(rows[2].response[k : k + 5])
    assert div["other_continuation"].startswith("XYZ")
    start = div["token_window_start"]
    assert div["reference_tokens"][k - start] == ord(rows[2].response[k])
    assert div["other_tokens"][k - start] == ord("X")
    assert div["correctness_flipped"] is True


def test_flipping_divergence_sorted_first(tmp_path: Path) -> None:
    rows = make_rows()
    other = list(rows)
    other[1] = diverge(rows[1], 3, "QQ", logit=0.0, correct=rows[1].correct)  # early, no flip
    other[4] = diverge(rows[4], 20, "ZZ", logit=0.0, correct=not rows[4].correct)  # flip
    out = tmp_path / "inv.json"
    result = check_invariance(
        {1: write(tmp_path, 1, rows), 2: write(tmp_path, 2, other)}, out, checkpoint="base"
    )
    assert [d.id for d in result.comparisons[0].divergences] == [4, 1]


def test_prefix_only_difference(tmp_path: Path) -> None:
    rows = make_rows(2)
    longer = replace(rows[0], response=rows[0].response + " Done", logits=[*rows[0].logits, 1.0])
    out = tmp_path / "inv.json"
    result = check_invariance(
        {1: write(tmp_path, 1, rows), 2: write(tmp_path, 2, [longer, rows[1]])},
        out,
        checkpoint="base",
    )
    (div,) = result.comparisons[0].divergences
    assert div.first_token_index == len(rows[0].response)
    assert div.reference_logit is None and div.logit_delta is None
    assert div.other_continuation == " Done"


def test_fail_on_divergence_raises_after_writing(tmp_path: Path) -> None:
    rows = make_rows()
    other = [*rows[:-1], diverge(rows[-1], 5, "!!", logit=1.0, correct=rows[-1].correct)]
    out = tmp_path / "sub" / "inv.json"
    paths = {1: write(tmp_path, 1, rows), 2: write(tmp_path, 2, other)}
    with pytest.raises(BatchInvarianceError, match="batch size 2: 1 of 6"):
        check_invariance(paths, out, checkpoint="base", fail_on_divergence=True)
    data = json.loads(out.read_text())
    assert data["invariant"] is False
    assert data["comparisons"][0]["divergences"][0]["id"] == rows[-1].id
    assert not [p for p in out.parent.iterdir() if p.name != "inv.json"]  # no temp files left


def test_mismatched_ids_error(tmp_path: Path) -> None:
    rows = make_rows()
    paths = {1: write(tmp_path, 1, rows), 4: write(tmp_path, 4, rows[:-1])}
    with pytest.raises(RolloutMismatchError, match=r"missing \[5\]"):
        check_invariance(paths, tmp_path / "inv.json", checkpoint="base")
    assert not (tmp_path / "inv.json").exists()


def test_duplicate_ids_and_wrong_checkpoint_error(tmp_path: Path) -> None:
    rows = make_rows()
    dup = {1: write(tmp_path, 1, [*rows, rows[0]])}
    with pytest.raises(RolloutMismatchError, match="duplicate id 0"):
        check_invariance(dup, tmp_path / "inv.json", checkpoint="base")
    paths = {1: write(tmp_path, 1, rows)}
    with pytest.raises(RolloutMismatchError, match="expected 'lora'"):
        check_invariance(paths, tmp_path / "inv.json", checkpoint="lora")


def test_single_batch_size_has_nothing_to_compare(tmp_path: Path) -> None:
    out = tmp_path / "inv.json"
    result = check_invariance({4: write(tmp_path, 4, make_rows())}, out, checkpoint="base")
    data = json.loads(out.read_text())
    assert data["comparisons"] == [] and data["batch_sizes"] == [4]
    assert "nothing to compare" in data["message"]
    assert result.invariant


def test_no_rollouts_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        check_invariance({}, tmp_path / "inv.json", checkpoint="base")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [([1, 2, 3], [1, 2, 3], None), ([1, 2, 3], [1, 5, 3], 1), ([1, 2], [1, 2, 3], 2), ([], [7], 0)],
)
def test_first_difference(a: list[int], b: list[int], expected: int | None) -> None:
    assert first_difference(a, b) == expected
