"""One evaluation in lm-eval's own output shapes (`gsm8k-eval export-lm-eval`).

lm-eval (0.4.x) writes, per run, a `results_<date>.json` (`EvaluationTracker.
save_results_aggregated`) and a `samples_<task>_<date>.jsonl` (`save_results_samples`). This
module writes the same shapes from an evaluation's rollouts.jsonl and summary.json, with fixed
names (`results.json`, `samples_gsm8k.jsonl`) so the pipeline can declare them:

results.json   `results.gsm8k` holds `exact_match,<filter>` and `exact_match_stderr,<filter>`
               for lm-eval's two gsm8k filters (`strict-match`, `flexible-extract`) and
               `alias`; `n-shot`, `n-samples`, `versions`, `higher_is_better`, `configs` (what
               this run actually did, in lm-eval's task-config keys) and `config` (the model).
               `gsm8k_eval` says which evaluation it came from and whether its protocol was
               lm-eval's (`fewshot` template, lm-eval's stop sequences).
samples_gsm8k.jsonl
               one line per example and filter, `strict-match` lines first, as lm-eval orders
               them: doc_id, doc {question, answer}, target, arguments, resps, filtered_resps,
               filter, metrics, doc_hash, prompt_hash, target_hash, exact_match.

A sampled run (n samples per question, docs/sampled.md) is exported as lm-eval runs a task
with `repeats: n`: one document per question whose `resps` holds its n responses (sample-index
order). lm-eval's gsm8k filters end in `take_first`, so `strict-match` / `flexible-extract` score
the first sample (gsm8k-cot-self-consistency's "score-first"); `<filter>-maj@k` (k = 2, 4, ...
and n) adds that task's majority filter: `take_first_k` k, the filter's regex, `majority_vote`
(lm-eval's: the most common raw filtered string, `[invalid]` included, ties to the first seen),
`take_first`, scored by the same `exact_match`. summary.json's `sampled` block (pass@k, maj@k
over normalised answers) is copied into `gsm8k_eval`.

The scores are the rollouts' own (`correct_by_method`, graded by `gsm8k_eval.scoring`, which
tests/test_lm_eval_fixture.py checks against real lm-eval); the stderr is lm-eval's
`mean_stderr`: sqrt(p(1-p)/(n-1)) for 0/1 scores, "N/A" for fewer than two examples.
Imports no JAX, numpy or scipy at import time (the Snakefile imports `export_dir`/
`export_targets`): the sampled-run helpers are imported where they are used.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gsm8k_eval.io import atomic_write_text, read_json, read_jsonl, write_json

TASK = "gsm8k"
TASK_VERSION = 3.0  # lm-eval's gsm8k.yaml `metadata.version` that our methods reproduce
FILTERS = ("strict-match", "flexible-extract")  # lm-eval's gsm8k filter_list, in its order
METRIC = "exact_match"
RESULTS_NAME = "results.json"
SAMPLES_NAME = f"samples_{TASK}.jsonl"
LM_EVAL_FEWSHOT_TEMPLATE = "fewshot"
LM_EVAL_STOPS = ("Question:", "</s>", "<|im_end|>")
# lm-eval's gsm8k filter pipelines and metric options (gsm8k.yaml), stated in `configs`.
FILTER_LIST = [
    {
        "name": "strict-match",
        "filter": [
            {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
            {"function": "take_first"},
        ],
    },
    {
        "name": "flexible-extract",
        "filter": [
            {
                "function": "regex",
                "group_select": -1,
                "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)",
            },
            {"function": "take_first"},
        ],
    },
]
METRIC_LIST = [
    {
        "metric": METRIC,
        "aggregation": "mean",
        "higher_is_better": True,
        "ignore_case": True,
        "ignore_punctuation": False,
        "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"],
    }
]


def metric_key(filter_name: str, stderr: bool = False) -> str:
    """lm-eval's results key: `exact_match,strict-match`, `exact_match_stderr,strict-match`."""
    return f"{METRIC}{'_stderr' if stderr else ''},{filter_name}"


def mean_stderr(scores: Sequence[float]) -> float | None:
    """lm-eval's `mean_stderr` (sample standard deviation / sqrt(n)); None below two scores."""
    n = len(scores)
    if n < 2:
        return None
    mu = sum(scores) / n
    return math.sqrt(sum((x - mu) ** 2 for x in scores) / (n - 1)) / math.sqrt(n)


def proportion_stderr(correct: int, total: int) -> float | None:
    """`mean_stderr` of `total` 0/1 scores of which `correct` are 1: sqrt(p(1-p)/(n-1))."""
    if total < 2:
        return None
    p = correct / total
    return math.sqrt(p * (1 - p) / (total - 1))


def hash_string(text: str) -> str:
    """lm-eval's `hash_string` (sha256 hex of the UTF-8 text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stop_sequences(summary: dict[str, Any]) -> list[str]:
    """The run's stop sequences: the summary's when it records them, else its template's."""
    if summary.get("stop_sequences") is not None:
        return list(summary["stop_sequences"])
    from gsm8k_eval.prompts import STOP_SEQUENCES

    return list(STOP_SEQUENCES.get(summary.get("prompt_template"), ()))


def uses_lm_eval_protocol(summary: dict[str, Any]) -> bool:
    """Whether the run prompted and stopped as lm-eval's gsm8k does (its scores then are
    lm-eval's metric on lm-eval's protocol; otherwise its metric on another protocol)."""
    stops = stop_sequences(summary)
    return summary.get("prompt_template") == LM_EVAL_FEWSHOT_TEMPLATE and all(
        stop in stops for stop in LM_EVAL_STOPS
    )


def num_fewshot(summary: dict[str, Any]) -> int:
    """Shots in the prompt (0 for templates without shots)."""
    if summary.get("prompt_template") != LM_EVAL_FEWSHOT_TEMPLATE:
        return 0
    return int(summary.get("num_shots") or 0)


def generation_kwargs(summary: dict[str, Any]) -> dict[str, Any]:
    temperature = float(summary.get("temperature") or 0)
    kwargs = {
        "until": stop_sequences(summary),
        "do_sample": temperature > 0,
        "temperature": temperature,
        "max_gen_toks": summary.get("max_generation_steps"),
    }
    if temperature > 0:
        kwargs.update(top_k=summary.get("top_k"), top_p=summary.get("top_p"))
    return kwargs


def majority_filters(samples: int) -> list[tuple[str, str, int]]:
    """(name, base filter, k) of the majority-vote filters of a run of `samples` per question."""
    if samples < 2:
        return []
    from gsm8k_eval.sampled_summary import reported_ks

    ks = [k for k in reported_ks(samples) if k > 1]
    return [(f"{name}-maj@{k}", name, k) for name in FILTERS for k in ks]


def majority_vote(answers: Sequence[str]) -> str:
    """lm-eval's `majority_vote` filter: the most common string, ties to the first seen."""
    return Counter(answers).most_common(1)[0][0]


def _doc(dataset: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, str]:
    index = int(row["id"])
    if not 0 <= index < len(dataset) or dataset[index]["question"] != row["question"]:
        raise ValueError(
            f"rollout {row['id']} does not match line {index + 1} of the dataset file: "
            "export with the dataset the evaluation read"
        )
    return {"question": dataset[index]["question"], "answer": dataset[index]["answer"]}


def _truncate(text: str, stops: Sequence[str]) -> str:
    """The response as lm-eval's model returns it: cut before the first `until` string."""
    cut = len(text)
    for stop in stops:
        if stop and (index := text.find(stop)) != -1:
            cut = min(cut, index)
    return text[:cut]


def _record(
    doc: dict[str, str],
    row: dict[str, Any],
    resps: list[str],
    filtered: Any,
    filter_name: str,
    score: float,
    gen_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """One document's record for one filter, in lm-eval's key order."""
    target = doc["answer"]  # gsm8k.yaml doc_to_target: "{{answer}}"
    return {
        "doc_id": row["id"],
        "doc": doc,
        "target": target,
        "arguments": {"gen_args_0": {"arg_0": row["prompt"], "arg_1": gen_kwargs}},
        "resps": [resps],
        "filtered_resps": [str(filtered)],
        "filter": filter_name,
        "metrics": [METRIC],
        "doc_hash": hash_string(json.dumps(doc, indent=2, ensure_ascii=False)),
        "prompt_hash": hash_string(row["prompt"]),
        "target_hash": hash_string(str(target)),
        METRIC: score,
    }


def _is_sampled(rows: list[dict[str, Any]]) -> bool:
    from gsm8k_eval.sampled_summary import is_sampled

    return is_sampled(rows)


def _samples_per_question(rows: list[dict[str, Any]]) -> int:
    from gsm8k_eval.sampled_summary import by_question

    return len(by_question(rows)[0])


def sample_records(
    rows: list[dict[str, Any]], dataset: list[dict[str, Any]], summary: dict[str, Any]
) -> list[dict[str, Any]]:
    """lm-eval's per-sample records (as `save_results_samples` writes them), filter by filter."""
    if _is_sampled(rows):
        return sampled_records(rows, dataset, summary)
    gen_kwargs = generation_kwargs(summary)
    records = []
    for filter_name in FILTERS:
        for row in rows:
            resps = [_truncate(row["response"], gen_kwargs["until"])]
            filtered = row["extracted"][filter_name]
            score = 1.0 if row["correct_by_method"][filter_name] else 0.0
            doc = _doc(dataset, row)
            records.append(_record(doc, row, resps, filtered, filter_name, score, gen_kwargs))
    return records


def sampled_records(
    rows: list[dict[str, Any]], dataset: list[dict[str, Any]], summary: dict[str, Any]
) -> list[dict[str, Any]]:
    """One record per question and filter, its samples' responses in `resps` (lm-eval with
    `repeats`): the first sample for lm-eval's filters, then the majority-vote filters."""
    from gsm8k_eval.sampled_summary import by_question
    from gsm8k_eval.scoring import lm_eval_exact_match

    gen_kwargs = generation_kwargs(summary)
    groups = by_question(rows)
    for group in groups:
        if len({r["prompt"] for r in group}) != 1:
            raise ValueError(f"the samples of question {group[0]['id']} have different prompts")
    docs = [_doc(dataset, group[0]) for group in groups]
    resps = [[_truncate(r["response"], gen_kwargs["until"]) for r in group] for group in groups]
    records = []
    for filter_name in FILTERS:
        for doc, group, texts in zip(docs, groups, resps, strict=True):
            first = group[0]
            score = 1.0 if first["correct_by_method"][filter_name] else 0.0
            filtered = first["extracted"][filter_name]
            records.append(_record(doc, first, texts, filtered, filter_name, score, gen_kwargs))
    for name, base, k in majority_filters(len(groups[0]) if groups else 0):
        for doc, group, texts in zip(docs, groups, resps, strict=True):
            vote = majority_vote([str(r["extracted"][base]) for r in group[:k]])
            score = 1.0 if lm_eval_exact_match(vote, doc["answer"]) else 0.0
            records.append(_record(doc, group[0], texts, vote, name, score, gen_kwargs))
    return records


def results_document(
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
    records: list[dict[str, Any]],
    dataset_rows: int,
) -> dict[str, Any]:
    """lm-eval's aggregated results (`results_<date>.json`) for one evaluation (documents: one
    per example, or per question of a sampled run)."""
    sampled = _is_sampled(rows)
    samples = _samples_per_question(rows) if sampled else 1
    total = len(rows) // samples
    task: dict[str, Any] = {"alias": TASK}
    for filter_name in [*FILTERS, *(name for name, _, _ in majority_filters(samples))]:
        correct = sum(r[METRIC] == 1.0 for r in records if r["filter"] == filter_name)
        stderr = proportion_stderr(correct, total)
        task[metric_key(filter_name)] = correct / total if total else None
        task[metric_key(filter_name, stderr=True)] = "N/A" if stderr is None else stderr
    hashes = "".join(r["doc_hash"] + r["prompt_hash"] + r["target_hash"] for r in records)
    model = summary.get("model_source")
    return {
        "results": {TASK: task},
        "group_subtasks": {TASK: []},
        "configs": {TASK: task_config(summary, samples)},
        "versions": {TASK: TASK_VERSION},
        "n-shot": {TASK: num_fewshot(summary)},
        "higher_is_better": {TASK: {METRIC: True}},
        "n-samples": {TASK: {"original": dataset_rows, "effective": total}},
        "config": {
            "model": model,
            "model_args": None,
            "batch_size": summary.get("batch_size"),
            "batch_sizes": [],
            "device": summary.get("device"),
            "use_cache": None,
            "limit": total if total < dataset_rows else None,
            "bootstrap_iters": 0,
            "gen_kwargs": generation_kwargs(summary),
        },
        "task_hashes": {TASK: hash_string(hashes)},
        "model_source": "gsm8k-eval",
        "model_name": model,
        "model_name_sanitized": str(model).replace("/", "__").replace(":", "__"),
        "gsm8k_eval": {
            "checkpoint": summary.get("checkpoint"),
            "sampler": summary.get("sampler"),
            "batch_size": summary.get("batch_size"),
            "prompt_template": summary.get("prompt_template"),
            "primary_method": summary.get("primary_method"),
            "eos_tokens": summary.get("eos_tokens"),
            "versions": summary.get("versions"),
            "lm_eval_protocol": uses_lm_eval_protocol(summary),
            "note": "written by gsm8k-eval from its rollouts, not by lm-eval; scores are "
            "lm-eval's gsm8k filters and exact_match applied to this pipeline's generations",
            **(sampled_note(summary, samples) if sampled else {}),
        },
    }


def sampled_note(summary: dict[str, Any], samples: int) -> dict[str, Any]:
    """What a sampled run's export means, and the summary's own pass@k / maj@k."""
    return {
        "num_samples": samples,
        "sampled": summary.get("sampled"),
        "sampled_note": "one document per question with its samples' responses (lm-eval's "
        "repeats); strict-match and flexible-extract score the first sample (take_first); "
        "<filter>-maj@k is lm-eval's majority_vote over the first k samples' filtered "
        "strings; `sampled` is summary.json's pass@k and maj@k (normalised answers)",
    }


def task_config(summary: dict[str, Any], samples: int = 1) -> dict[str, Any]:
    """lm-eval's task-config keys, filled with what this run did (`samples` per question)."""
    return {
        "task": TASK,
        "dataset_path": "openai/gsm8k",
        "dataset_name": "main",
        "test_split": "test",
        "fewshot_split": "train",
        "doc_to_text": f"gsm8k-eval prompt template {summary.get('prompt_template')!r}",
        "doc_to_target": "{{answer}}",
        "output_type": "generate_until",
        "num_fewshot": num_fewshot(summary),
        "generation_kwargs": generation_kwargs(summary),
        "repeats": samples,
        "filter_list": FILTER_LIST + majority_filter_list(samples),
        "metric_list": METRIC_LIST,
        "metadata": {"version": TASK_VERSION},
    }


def majority_filter_list(samples: int) -> list[dict[str, Any]]:
    """The majority filters in lm-eval's filter_list form (gsm8k-cot-self-consistency's)."""
    regex = {f["name"]: f["filter"][0] for f in FILTER_LIST}
    return [
        {
            "name": name,
            "filter": [
                {"function": "take_first_k", "k": k},
                regex[base],
                {"function": "majority_vote"},
                {"function": "take_first"},
            ],
        }
        for name, base, k in majority_filters(samples)
    ]


def export_lm_eval(rollouts: Path, summary_path: Path, dataset: Path, out_dir: Path) -> Path:
    """Write `results.json` and `samples_gsm8k.jsonl` for one evaluation; returns `out_dir`."""
    rows = read_jsonl(Path(rollouts))
    summary = read_json(Path(summary_path))
    docs = read_jsonl(Path(dataset))
    if len(rows) != summary.get("total", len(rows)):
        raise ValueError(f"{rollouts} has {len(rows)} rows, its summary says {summary['total']}")
    records = sample_records(rows, docs, summary)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(out_dir / SAMPLES_NAME, "".join(lines))
    write_json(out_dir / RESULTS_NAME, results_document(rows, summary, records, len(docs)))
    return out_dir


# ---------------------------------------------------------------- pipeline paths


def export_dir(eval_dir: str) -> str:
    """`results/<run>/eval/<ckpt>/<sampler>/bs<N>` -> `results/<run>/lm-eval/<ckpt>/...`."""
    parts = eval_dir.split("/")
    if len(parts) < 5 or parts[-4] != "eval":  # <root>/eval/<ckpt>/<sampler>/bs<N>
        raise ValueError(f"not an evaluation folder: {eval_dir}")
    return "/".join([*parts[:-4], "lm-eval", *parts[-3:]])


def results_path(eval_dir: str) -> str:
    return f"{export_dir(eval_dir)}/{RESULTS_NAME}"


def samples_path(eval_dir: str) -> str:
    return f"{export_dir(eval_dir)}/{SAMPLES_NAME}"


def export_targets(summaries: Sequence[str]) -> list[str]:
    """The export files of every evaluation, from its summary.json path (rule all's inputs)."""
    dirs = [Path(s).parent.as_posix() for s in summaries]
    return [path(d) for d in dirs for path in (results_path, samples_path)]
