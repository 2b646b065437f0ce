"""Generate tests/data/lm_eval_gsm8k_fixture.jsonl with real lm-eval (run once, outside CI).

The fixture pins what lm-eval's own `gsm8k` task makes of a few hundred responses: its two
filter pipelines (`strict-match`, `flexible-extract`) and its `exact_match` metric, both built
from the `gsm8k.yaml` that ships inside the installed lm_eval package (not copied by hand), on
responses made from GSM8K train answers (perturbed) plus edge cases. tests/test_lm_eval_fixture.py
then checks that `gsm8k_eval.scoring` gives the same filtered answers and scores on every line.

lm_eval is not a dependency of this project; install it in a throwaway venv:

    python3 -m venv /tmp/lmeval && /tmp/lmeval/bin/pip install "lm_eval==0.4.13"
    /tmp/lmeval/bin/python tests/data/make_lm_eval_fixture.py \
        --train ../shared/data/gsm8k/train.jsonl --out tests/data/lm_eval_gsm8k_fixture.jsonl

Only lm_eval's filter and metric code runs (no model, no dataset download). Deterministic:
the same lm_eval version and train file give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
from importlib import metadata
from pathlib import Path

import yaml
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_metric
from lm_eval.filters import build_filter_ensemble

TASK = "gsm8k"
SEED = 20261204
PERTURBED = 12  # train examples, each turned into every perturbation below
METRIC_OPTIONS = ("metric", "aggregation", "higher_is_better")


def task_config() -> dict:
    """The gsm8k task's yaml as shipped in the installed lm_eval package."""
    import lm_eval

    path = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    return yaml.safe_load(path.read_text())


def final_number(answer: str) -> str:
    return answer.rsplit("####", 1)[1].strip()


def body(answer: str) -> str:
    return answer.rsplit("####", 1)[0].rstrip()


def perturbations(answer: str, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, response) pairs from one GSM8K answer field."""
    n = final_number(answer)
    value = int(n.replace(",", ""))
    wrong = value + rng.choice([-10, -1, 1, 2, 100])
    work = body(answer)
    return [
        ("verbatim", answer),
        ("verbatim-no-calc", work.replace("<<", "").replace(">>", " ") + f"\n#### {n}"),
        ("decimal-zeros", f"{work}\n#### {n}.00"),
        ("thousands", f"{work}\n#### {value:,}"),
        ("dollar", f"{work}\n#### ${value:,}"),
        ("trailing-period", f"{work}\n#### {n}."),
        ("two-periods", f"{work}\n#### {n}.."),
        ("no-space", f"{work}\n####{n}"),
        ("two-spaces", f"{work}\n####  {n}"),
        ("wrong", f"{work}\n#### {wrong}"),
        ("negative", f"{work}\n#### -{n}"),
        ("multiple-hash-first-right", f"{work}\n#### {n}\n#### {wrong}"),
        ("multiple-hash-last-right", f"{work}\n#### {wrong}\n#### {n}"),
        ("sentence", f"{work}\nThe answer is {n}."),
        ("sentence-dollar", f"{work}\nSo the total is ${value:,}."),
        ("boxed", f"{work}\nThe answer is \\boxed{{{n}}}."),
        ("boxed-only", f"\\boxed{{{n}}}"),
        ("no-answer", "I am not sure how to solve this problem."),
        ("continues", f"{work}\n#### {n}\n\nQuestion: What is 2 + 2?\nAnswer: 4"),
        ("answer-tag", f"<reasoning>{work}</reasoning><answer>{n}</answer>"),
        ("upper-case", f"{work.upper()}\n#### {n}"),
        ("units", f"{work}\n#### {n} dollars"),
        ("percent", f"{work}\n#### {n}%"),
        ("empty", ""),
    ]


EDGE_CASES = [  # (response, answer field)
    ("#### 18", "x\n#### 18"),
    ("#### 18.00", "x\n#### 18"),
    ("#### 18.0", "x\n#### 18"),
    ("#### $1,000", "x\n#### 1000"),
    ("#### 1,000", "x\n#### 1000"),
    ("#### 1000", "x\n#### 1,000"),
    ("#### 1,00", "x\n#### 100"),
    ("The answer is $1,000.", "x\n#### 1000"),
    ("no answer here", "x\n#### 5"),
    ("no digits at all", "x\n#### [INVALID]"),
    ("#### 3\n#### 4", "x\n#### 3"),
    ("#### 3\n#### 4", "x\n#### 4"),
    ("#### 7.", "x\n#### 7"),
    ("#### 7..", "x\n#### 7"),
    ("#### -7", "x\n#### -7"),
    ("#### -7", "x\n#### 7"),
    ("It dropped by -12 degrees", "x\n#### -12"),
    ("The change is -3", "x\n#### -3"),
    ("\\boxed{42}", "x\n#### 42"),
    ("\\boxed{42}.", "x\n#### 42"),
    ("So \\boxed{1,250} dollars", "x\n#### 1250"),
    ("####  7", "x\n#### 7"),
    ("#### 0", "x\n#### 0"),
    ("#### .5", "x\n#### 0.5"),
    ("#### 0.5", "x\n#### .5"),
    ("#### 3/4", "x\n#### 0.75"),
    ("7", "x\n#### 7"),
    ("a 7", "x\n#### 7"),
    ("1. 2. 3.", "x\n#### 3"),
    ("costs $5.", "x\n#### 5"),
    ("costs $.", "x\n#### 5"),
    ("..., ,,, $$$", "x\n#### 5"),
    ("#### ,", "x\n#### 5"),
    ("#### 12 eggs", "x\n#### 12 eggs"),
    ("The Answer Is 12", "x\n#### the answer is 12"),
    ("#### 1e3", "x\n#### 1000"),
    ("18\n\nQuestion: next one 19", "x\n#### 18"),
    ("#### 5\n", "x\n#### 5"),
    ("#### 5 \n", "x\n#### 5"),
    ("#### 2,5", "x\n#### 25"),
    ("first 10, then 20, finally 30.", "x\n#### 30"),
    ("first 10, then 20, finally 30.", "x\n#### 10"),
    ("The answer: 100.5.", "x\n#### 100.5"),
    ("\u0130 #### 9", "x\n#### 9"),
    ("#### 9\u00a0", "x\n#### 9"),
]


def random_text(rng: random.Random) -> str:
    alphabet = "0123456789$,.-# \nabc"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))


def cases(train: Path, rng: random.Random) -> list[dict]:
    rows = [json.loads(line) for line in train.read_text().splitlines() if line.strip()]
    picked = rng.sample(range(len(rows)), PERTURBED)
    out = []
    for index in picked:
        doc = {"question": rows[index]["question"], "answer": rows[index]["answer"]}
        for kind, response in perturbations(doc["answer"], rng):
            out.append({"kind": kind, "train_index": index, "doc": doc, "response": response})
    for response, answer in EDGE_CASES:
        out.append(
            {"kind": "edge", "doc": {"question": "", "answer": answer}, "response": response}
        )
    for _ in range(60):
        answer = f"x\n#### {rng.choice(['5', '-5', '1,000', '12.5', '0'])}"
        out.append(
            {
                "kind": "random",
                "doc": {"question": "", "answer": answer},
                "response": random_text(rng),
            }
        )
    return out


def run_lm_eval(rows: list[dict]) -> None:
    """Add lm-eval's filtered answers and exact_match scores to each row (in place)."""
    config = task_config()
    ensembles = [
        build_filter_ensemble(f["name"], [(s["function"], _kwargs(s)) for s in f["filter"]])
        for f in config["filter_list"]
    ]
    [metric] = [m for m in config["metric_list"] if m["metric"] == "exact_match"]
    metric_fn = get_metric("exact_match")
    metric_kwargs = {k: v for k, v in metric.items() if k not in METRIC_OPTIONS}
    instances = [
        Instance("generate_until", row["doc"], ("prompt", {}), 0, (TASK, i, 1))
        for i, row in enumerate(rows)
    ]
    for inst, row in zip(instances, rows, strict=True):
        inst.resps.append(row["response"])
    for ensemble in ensembles:
        ensemble.apply(instances)
    for inst, row in zip(instances, rows, strict=True):
        target = row["doc"]["answer"]  # doc_to_target: "{{answer}}"
        row["filtered"], row["exact_match"] = {}, {}
        for ensemble in ensembles:
            result = inst.filtered_resps[ensemble.name]
            # ConfigurableTask.process_results, generate_until, single target:
            score = metric_fn(references=[target], predictions=[result], **metric_kwargs)
            row["filtered"][ensemble.name] = result
            row["exact_match"][ensemble.name] = float(score["exact_match"])


def _kwargs(step: dict) -> dict:
    return {k: v for k, v in step.items() if k != "function"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="GSM8K train.jsonl")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = cases(args.train, random.Random(SEED))
    run_lm_eval(rows)
    header = {
        "lm_eval_version": metadata.version("lm_eval"),
        "task": TASK,
        "task_version": task_config()["metadata"]["version"],
        "cases": len(rows),
    }
    lines = [json.dumps({"header": header})]
    lines += [json.dumps(row, ensure_ascii=False, sort_keys=True) for row in rows]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(rows)} cases, lm_eval {header['lm_eval_version']}")


if __name__ == "__main__":
    main()
