"""`gsm8k-eval export-lm-eval`: an evaluation written in lm-eval's output shapes, read back
with the field names lm-eval 0.4 writes (evaluator.py `logged_samples`, evaluation_tracker.py
`save_results_samples`/`save_results_aggregated`). Responses and lm-eval's own verdicts come from
the real-lm-eval fixture (tests/data/lm_eval_gsm8k_fixture.jsonl)."""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from pathlib import Path

import pytest

from gsm8k_eval.cli import main
from gsm8k_eval.lm_eval_export import export_targets
from gsm8k_eval.scoring import normalise, score_response

FIXTURE = Path(__file__).parent / "data" / "lm_eval_gsm8k_fixture.jsonl"
FILTERS = ["strict-match", "flexible-extract"]
SAMPLE_KEYS = [  # lm-eval's order
    "doc_id",
    "doc",
    "target",
    "arguments",
    "resps",
    "filtered_resps",
    "filter",
    "metrics",
    "doc_hash",
    "prompt_hash",
    "target_hash",
    "exact_match",
]
N = 30


def fixture_rows() -> list[dict]:
    rows = [json.loads(line) for line in FIXTURE.read_text("utf-8").splitlines()[1:]]
    for r in rows:  # a GSM8K row's key order (the fixture's keys are sorted)
        r["doc"] = {"question": r["doc"]["question"], "answer": r["doc"]["answer"]}
    rows = [r for r in rows if r["doc"]["question"] and "Question:" not in r["response"]]
    return rows[:: len(rows) // N][:N]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_run(tmp_path: Path, cases: list[dict], template: str = "fewshot") -> Path:
    """A dataset (cases' docs plus one unused line), rollouts graded by our scoring, a summary."""
    dataset = [c["doc"] for c in cases] + [{"question": "unused?", "answer": "x\n#### 1"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dataset))
    rollouts = []
    for i, case in enumerate(cases):
        answer = case["doc"]["answer"]
        gold = normalise(answer.rsplit("####", 1)[-1]) or "0"
        # a base model's few-shot continuation, cut at "Question:" as lm-eval's `until` does
        response = case["response"] + "\n\nQuestion: and then?"
        scored = score_response(response, gold, stop_sequences=["Question:"], reference=answer)
        rollouts.append(
            {
                "id": i,
                "question": case["doc"]["question"],
                "prompt": f"Question: {case['doc']['question']}\nAnswer:",
                "response": response,
                "gold": gold,
                "correct": scored.correct,
                "extracted": scored.extracted,
                "correct_by_method": scored.correct_by_method,
            }
        )
    run = tmp_path / "results" / "r" / "eval" / "base" / "fixed" / "bs4"
    run.mkdir(parents=True)
    (run / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rollouts))
    summary = {
        "checkpoint": "base",
        "sampler": "fixed",
        "batch_size": 4,
        "total": len(rollouts),
        "model_source": "hf:google/gemma-3-1b-it",
        "prompt_template": template,
        "num_shots": 5,
        "max_generation_steps": 256,
        "temperature": 0,
        "eos_tokens": [1, 106],
        "device": "cpu:cpu x1",
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def export(tmp_path: Path, run: Path) -> Path:
    out = tmp_path / "results" / "r" / "lm-eval" / "base" / "fixed" / "bs4"
    code = main(
        [
            "export-lm-eval",
            f"--rollouts={run / 'rollouts.jsonl'}",
            f"--summary={run / 'summary.json'}",
            f"--dataset={tmp_path / 'test.jsonl'}",
            f"--out-dir={out}",
        ]
    )
    assert code == 0
    return out


def test_export_reads_back_with_lm_eval_field_names(tmp_path: Path) -> None:
    cases = fixture_rows()
    assert len(cases) == N
    out = export(tmp_path, write_run(tmp_path, cases))
    results = json.loads((out / "results.json").read_text())
    samples = [json.loads(line) for line in (out / "samples_gsm8k.jsonl").read_text().splitlines()]

    # per-sample records: one per example and filter, strict-match first, lm-eval's keys
    assert len(samples) == 2 * N
    assert [s["filter"] for s in samples] == ["strict-match"] * N + ["flexible-extract"] * N
    for k, s in enumerate(samples):
        case = cases[k % N]
        assert list(s) == SAMPLE_KEYS
        assert s["doc_id"] == k % N and s["doc"] == case["doc"]
        assert s["target"] == case["doc"]["answer"]
        args = s["arguments"]["gen_args_0"]
        assert args["arg_0"] == f"Question: {case['doc']['question']}\nAnswer:"
        assert args["arg_1"]["until"] == ["Question:", "</s>", "<|im_end|>"]
        assert s["resps"] == [[case["response"] + "\n\n"]]  # cut at the stop sequence
        # lm-eval's own filtered answer and score for this response (the fixture)
        assert s["filtered_resps"] == [case["filtered"][s["filter"]]]
        assert s["exact_match"] == case["exact_match"][s["filter"]]
        assert s["metrics"] == ["exact_match"]
        assert s["doc_hash"] == sha(json.dumps(case["doc"], indent=2, ensure_ascii=False))
        assert s["prompt_hash"] == sha(args["arg_0"])
        assert s["target_hash"] == sha(s["target"])

    # aggregated results: lm-eval's keys, mean and mean_stderr of the per-sample scores
    task = results["results"]["gsm8k"]
    assert task["alias"] == "gsm8k"
    for name in FILTERS:
        scores = [s["exact_match"] for s in samples if s["filter"] == name]
        assert task[f"exact_match,{name}"] == pytest.approx(statistics.fmean(scores))
        stderr = statistics.stdev(scores) / math.sqrt(len(scores))  # lm-eval's mean_stderr
        assert task[f"exact_match_stderr,{name}"] == pytest.approx(stderr)
    assert 0 < task["exact_match,strict-match"] < task["exact_match,flexible-extract"] < 1
    assert results["n-shot"] == {"gsm8k": 5}
    assert results["n-samples"] == {"gsm8k": {"original": N + 1, "effective": N}}
    assert results["versions"] == {"gsm8k": 3.0}
    assert results["higher_is_better"] == {"gsm8k": {"exact_match": True}}
    assert results["configs"]["gsm8k"]["num_fewshot"] == 5
    assert [f["name"] for f in results["configs"]["gsm8k"]["filter_list"]] == FILTERS
    assert results["config"]["model"] == "hf:google/gemma-3-1b-it"
    assert results["config"]["batch_size"] == 4 and results["config"]["limit"] == N
    hashes = "".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in samples)
    assert results["task_hashes"] == {"gsm8k": sha(hashes)}
    assert results["gsm8k_eval"]["lm_eval_protocol"] is True


def test_other_protocols_say_so_and_one_example_has_no_stderr(tmp_path: Path) -> None:
    out = export(tmp_path, write_run(tmp_path, fixture_rows()[:1], template="chat"))
    results = json.loads((out / "results.json").read_text())
    assert results["gsm8k_eval"]["lm_eval_protocol"] is False
    assert results["n-shot"] == {"gsm8k": 0}
    assert results["results"]["gsm8k"]["exact_match_stderr,strict-match"] == "N/A"  # as lm-eval


def test_rollouts_of_another_dataset_are_refused(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path, fixture_rows()[:3])
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n")
    assert main(["export-lm-eval", f"--rollouts={run / 'rollouts.jsonl'}",
                 f"--summary={run / 'summary.json'}", f"--dataset={tmp_path / 'test.jsonl'}",
                 f"--out-dir={tmp_path / 'out'}"]) == 1  # fmt: skip
    assert "does not match line 1 of the dataset file" in capsys.readouterr().err


def test_every_evaluation_gets_an_export_target() -> None:
    summaries = [f"results/demo/eval/base/{s}/bs{b}/summary.json" for s in ("fixed", "tunix")
                 for b in (1, 8)]  # fmt: skip
    targets = export_targets(summaries)
    assert len(targets) == 8
    assert "results/demo/lm-eval/base/tunix/bs8/results.json" in targets
    assert "results/demo/lm-eval/base/fixed/bs1/samples_gsm8k.jsonl" in targets


def test_export_folder_of_a_checkpoint_named_eval():
    """The export mirrors the last three levels of the evaluation folder, whatever they are
    called (a checkpoint may be named `eval`)."""
    from gsm8k_eval.lm_eval_export import export_dir

    assert export_dir("results/r/eval/eval/fixed/bs1") == "results/r/lm-eval/eval/fixed/bs1"
    assert export_dir("results/r/eval/base/tunix/bs8") == "results/r/lm-eval/base/tunix/bs8"


# A sampled run: 2 questions x 3 samples; lm-eval's filters on these responses, by hand.
SAMPLED_DOCS = [
    {"question": "Eggs?", "answer": "16 - 3 = 13\n#### 18"},
    {"question": "Cats?", "answer": "3 + 4 = 7\n#### 7"},
]
SAMPLED_RESPONSES = [
    ["so #### 5", "so #### 18", "so #### 18"],  # strict/flexible: 5, 18, 18
    ["no answer", "no answer again", "#### 7"],  # strict/flexible: [invalid], [invalid], 7
]


def write_sampled_run(tmp_path: Path) -> Path:
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(d) + "\n" for d in SAMPLED_DOCS))
    rollouts = []
    for q, (doc, responses) in enumerate(zip(SAMPLED_DOCS, SAMPLED_RESPONSES, strict=True)):
        gold = normalise(doc["answer"].rsplit("####", 1)[-1])
        for i, response in enumerate(responses):
            scored = score_response(response, gold, reference=doc["answer"])
            rollouts.append(
                {
                    "id": q,
                    "question": doc["question"],
                    "prompt": f"Question: {doc['question']}\nAnswer:",
                    "response": response,
                    "gold": gold,
                    "correct": scored.correct,
                    "extracted": scored.extracted,
                    "correct_by_method": scored.correct_by_method,
                    "sample_index": i,
                    "temperature": 0.7,
                }
            )
    run = tmp_path / "results" / "r" / "eval" / "base" / "fixed" / "bs4"
    run.mkdir(parents=True)
    (run / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rollouts))
    summary = {
        "checkpoint": "base",
        "total": len(rollouts),
        "model_source": "hf:google/gemma-3-1b-it",
        "prompt_template": "fewshot",
        "num_shots": 5,
        "max_generation_steps": 256,
        "temperature": 0.7,
        "top_k": 50,
        "top_p": 0.95,
        "num_samples": 3,
        "sampled": {"num_samples": 3, "pass@1": {"value": 0.5}},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_sampled_run_is_one_document_per_question_with_its_responses(tmp_path: Path) -> None:
    out = export(tmp_path, write_sampled_run(tmp_path))
    results = json.loads((out / "results.json").read_text())
    samples = [json.loads(line) for line in (out / "samples_gsm8k.jsonl").read_text().splitlines()]
    names = [f"{f}{m}" for f in FILTERS for m in ("", "-maj@2", "-maj@3")]
    order = [*FILTERS, *(n for n in names if "maj" in n)]  # lm-eval's filters, then the votes
    assert [s["filter"] for s in samples] == [name for name in order for _ in range(2)]
    for s in samples:
        assert list(s) == SAMPLE_KEYS
        assert s["resps"] == [SAMPLED_RESPONSES[s["doc_id"]]]
        assert s["doc"] == SAMPLED_DOCS[s["doc_id"]]
    filtered = {
        (s["filter"], s["doc_id"]): (s["filtered_resps"], s["exact_match"]) for s in samples
    }
    expected = {  # first sample; votes of 2 (a tie: the first seen) and 3, [invalid] voting
        "strict-match": [(["5"], 0.0), (["[invalid]"], 0.0)],
        "strict-match-maj@2": [(["5"], 0.0), (["[invalid]"], 0.0)],
        "strict-match-maj@3": [(["18"], 1.0), (["[invalid]"], 0.0)],
    }
    for name, rows in expected.items():
        for other in (name, name.replace("strict-match", "flexible-extract")):
            assert [filtered[(other, q)] for q in (0, 1)] == rows, other
    task = results["results"]["gsm8k"]
    assert task["exact_match,strict-match"] == 0.0 and task["exact_match,strict-match-maj@3"] == 0.5
    assert task["exact_match_stderr,flexible-extract-maj@3"] == pytest.approx(0.5)
    assert results["n-samples"] == {"gsm8k": {"original": 2, "effective": 2}}
    config = results["configs"]["gsm8k"]
    assert config["repeats"] == 3 and [f["name"] for f in config["filter_list"]] == order
    assert config["filter_list"][-1]["filter"][0] == {"function": "take_first_k", "k": 3}
    kwargs = config["generation_kwargs"]
    assert (kwargs["do_sample"], kwargs["top_k"], kwargs["top_p"]) == (True, 50, 0.95)
    assert results["gsm8k_eval"]["num_samples"] == 3
    assert results["gsm8k_eval"]["sampled"]["pass@1"] == {"value": 0.5}


def test_greedy_export_says_nothing_of_samples(tmp_path: Path) -> None:
    out = export(tmp_path, write_run(tmp_path, fixture_rows()[:2]))
    results = json.loads((out / "results.json").read_text())
    config = results["configs"]["gsm8k"]
    assert config["repeats"] == 1 and config["generation_kwargs"]["do_sample"] is False
    assert "top_k" not in config["generation_kwargs"] and "num_samples" not in results["gsm8k_eval"]
