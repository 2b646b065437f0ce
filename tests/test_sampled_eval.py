"""Sampled evaluation beyond the engine (issue 24): config and flags, requests and their keys,
grading every sample, the summary's pass@k / maj@k, and the invariance check per sample.
Hand-made generations; no model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from gsm8k_eval import draw, fingerprint
from gsm8k_eval.commands import _evaluate_flags
from gsm8k_eval.config import load_config
from gsm8k_eval.evaluation import requests
from gsm8k_eval.evaluation.shards import request_key_data
from gsm8k_eval.grading import score
from gsm8k_eval.invariance import check_invariance
from gsm8k_eval.io import write_json, write_jsonl
from gsm8k_eval.sampled_summary import reported_ks, sampled_fields
from gsm8k_eval.validation import ConfigError

SAMPLING = {"temperature": 0.7, "top_k": 50, "top_p": 0.95, "num_samples": 4}
GOLD = {0: "18", 1: "3"}


# -- config, flags, fingerprint ------------------------------------------------------------------


def sampled(**more) -> dict:
    """A fresh sampled config dict (load_config fills defaults in place)."""
    return {"sampling": dict(SAMPLING), **more}


def test_sampled_config_and_its_flags():
    cfg = load_config(sampled(samplers=["fixed", "tunix"]))
    assert cfg.sampling.sampled and cfg.sampling.num_samples == 4 and cfg.sampling.seed == 0
    flags = dict(_evaluate_flags(cfg, cfg.limit))
    assert (flags["--temperature"], flags["--top-k"], flags["--top-p"]) == (0.7, 50, 0.95)
    assert (flags["--num-samples"], flags["--sampling-seed"]) == (4, 0)
    greedy = dict(_evaluate_flags(load_config({}), None))
    assert not {"--temperature", "--top-k", "--num-samples"} & set(greedy)


def test_greedy_hash_ignores_the_sampling_keys_and_a_sampled_one_does_not():
    base = load_config({}).evaluation_hash()
    assert load_config({"sampling": {"top_k": 5, "seed": 9}}).evaluation_hash() == base
    one = load_config(sampled()).evaluation_hash()
    assert one != base
    assert load_config({"sampling": {**SAMPLING, "seed": 1}}).evaluation_hash() != one


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"sampling": {"num_samples": 2}}, "identical"),
        (sampled(samplers=["static"]), "static sampler"),
        (sampled(reference={"enabled": True}), "reference.enabled"),
        ({"sampling": {"top_p": 0}}, "top_p"),
        ({"sampling": {"seed": -1}}, "seed"),
    ],
)
def test_impossible_sampling_settings_are_config_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config)


def test_fingerprint_holds_the_sampling_options_only_when_sampling():
    options = {"batch_size": 1, "temperature": 0, "top_k": 0, "top_p": 1.0, "num_samples": 1}
    assert "top_k" not in fingerprint.engine_options({**options, "sampling_seed": 3})
    sampled = fingerprint.engine_options({**options, "temperature": 0.7, "sampling_seed": 3})
    assert (sampled["temperature"], sampled["sampling_seed"]) == ("0.7", "3")


# -- requests ------------------------------------------------------------------------------------


def test_requests_are_question_major_with_keys_from_question_and_index():
    examples = [SimpleNamespace(id=7), SimpleNamespace(id=8)]
    expanded = requests.expand(examples, 3)
    indices = requests.sample_indices(2, 3)
    assert [e.id for e in expanded] == [7, 7, 7, 8, 8, 8] and indices == [0, 1, 2] * 2
    data = request_key_data(5, expanded, indices)
    assert data.shape == (6, 2) and len({tuple(row) for row in data.tolist()}) == 6
    one = draw.key_data(draw.request_keys(5, [("8", 1)]))[0]
    assert data[4].tolist() == one.tolist()  # the 5th request: question 8, sample 1


# -- score and summary ---------------------------------------------------------------------------


def generation(qid: int, index: int | None, answer: str, tokens: list[int]) -> dict:
    row = {
        "id": qid,
        "question": f"question {qid}",
        "answer": f"work\n#### {GOLD[qid]}",
        "prompt": f"prompt {qid}",
        "response": f"reasoning\n#### {answer}",
        "tokens": tokens,
        "num_steps": len(tokens),
        "stop_reason": "eos",
        "token_logits": [0.5] * len(tokens),
        "prompt_tokens": 5,
        "batch_size": 1,
        "checkpoint": "base",
    }
    if index is not None:
        row.update(sample_index=index, temperature=0.7, top_k=0, top_p=1.0, sampling_seed=0)
    return row


# question 0: answers 18, 7, 7, 18 (2 of 4 right); question 1: 5, 3, 5, 5 (1 of 4 right)
ANSWERS = {0: ["18", "7", "7", "18"], 1: ["5", "3", "5", "5"]}


def write_run(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "generations.jsonl", rows)
    write_json(folder / "generation.json", {"checkpoint": "base", "batch_size": 1})
    return folder


def sampled_rows(order: list[tuple[int, int]] | None = None) -> list[dict]:
    order = order or [(q, i) for q in (0, 1) for i in range(4)]
    return [generation(q, i, ANSWERS[q][i], [q, i, 1]) for q, i in order]


def test_score_grades_every_sample_and_summarises_pass_and_majority(tmp_path):
    """Hand-computed: pass@1 = (2/4 + 1/4)/2; pass@2 = (1 - C(2,2)/C(4,2) + 1 - C(3,2)/C(4,2))/2
    = (5/6 + 1/2)/2; pass@4 = 1; maj@1 = (1 + 0)/2; maj@2: q0 tie 18 vs 7 -> 18 (first), q1
    tie 5 vs 3 -> 5: 1/2; maj@4: q0 tie 2-2 -> 18 right, q1 5 wins: 1/2."""
    rows = sampled_rows([(1, 3), (0, 2), (1, 0), (0, 0), (0, 3), (1, 1), (0, 1), (1, 2)])
    folder = write_run(tmp_path / "run", rows)
    score(folder, "strict")
    rollouts = [json.loads(line) for line in (folder / "rollouts.jsonl").read_text().splitlines()]
    assert [(r["sample_index"], r["temperature"]) for r in rollouts[:2]] == [(3, 0.7), (2, 0.7)]
    assert [r["correct"] for r in rollouts] == [False, False, False, True, True, True, False, False]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["total"] == 8 and summary["accuracy"] == pytest.approx(3 / 8)
    block = summary["sampled"]
    assert (block["num_samples"], block["questions"], block["k"]) == (4, 2, [1, 2, 4])
    expected = {
        "pass@1": 3 / 8,
        "pass@2": (5 / 6 + 1 / 2) / 2,
        "pass@4": 1.0,
        "maj@1": 1 / 2,
        "maj@2": 1 / 2,
        "maj@4": 1 / 2,
    }
    for name, value in expected.items():
        assert block[name]["value"] == pytest.approx(value), name
        low, high = block[name]["interval"]
        assert low <= value + 1e-12 and value - 1e-12 <= high
    assert block["pass@4"]["interval"] == [1.0, 1.0]


def test_greedy_score_has_no_sampled_fields(tmp_path):
    rows = [generation(0, None, "18", [1]), generation(1, None, "4", [2])]
    folder = write_run(tmp_path / "run", rows)
    score(folder, "strict")
    rollouts = [json.loads(line) for line in (folder / "rollouts.jsonl").read_text().splitlines()]
    assert not set(requests.SAMPLE_FIELDS) & set(rollouts[0])
    assert "sampled" not in json.loads((folder / "summary.json").read_text())


def test_votes_use_the_methods_comparison_and_missing_samples_are_an_error():
    rows = sampled_rows()
    rows[0]["extracted_answer"] = "18.00"  # numeric methods: the same answer as "18"
    for row, flag in zip(rows, [True, False, False, True, False, True, False, False], strict=True):
        row.setdefault("extracted_answer", row["response"].split("#### ")[1])
        row["correct"] = flag
    assert sampled_fields(rows, "strict")["sampled"]["maj@4"]["value"] == 0.5
    with pytest.raises(ValueError, match="sample indices"):
        sampled_fields(rows[:-1], "strict")
    assert sampled_fields([{"id": 0, "correct": True}], "strict") == {}


def test_reported_ks():
    assert reported_ks(1) == [1] and reported_ks(8) == [1, 2, 4, 8]
    assert reported_ks(6) == [1, 2, 4, 6]


# -- invariance per sample -----------------------------------------------------------------------


def test_invariance_compares_each_sample(tmp_path):
    one, other = tmp_path / "bs1", tmp_path / "bs8"
    score(write_run(one, sampled_rows()), "strict")
    changed = sampled_rows()
    changed[5]["tokens"] = [9, 9, 9]  # question 1, sample 1
    score(write_run(other, list(reversed(changed))), "strict")
    result = check_invariance(
        {1: one / "rollouts.jsonl", 8: other / "rollouts.jsonl"},
        tmp_path / "inv.json",
        checkpoint="base",
        sampler="fixed",
    )
    assert result.num_examples == 8 and not result.invariant
    (divergence,) = result.comparisons[0].divergences
    assert (divergence.id, divergence.sample_index) == (1, 1)
    written = json.loads((tmp_path / "inv.json").read_text())
    assert written["comparisons"][0]["divergences"][0]["sample_index"] == 1
