"""Independent recomputation of every value of a report rendered from the fixture, and the
markdown parsing the report tests use. Formats (e.g. '55.7%', '+1.2 pp') are part of the
report's contract and are re-implemented here, not imported."""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stats_oracle
import yaml
from report_fixture import (
    COMMAND,
    CONFIG,
    CONFIG_HASH,
    CONTEXT_CHARS,
    DATASET,
    DECLARED,
    LORA_SOURCE,
    MODEL,
    QUESTION_WIDTH,
    SHA,
    VERSIONS,
    question,
)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def pp(x: float) -> str:
    return f"{100 * x:+.1f} pp"


def stderr(k: int, n: int) -> str:
    """lm-eval's mean_stderr of k ones and n - k zeros, as a percentage."""
    if n < 2:
        return "n/a"
    return pct(statistics.stdev([1.0] * k + [0.0] * (n - k)) / math.sqrt(n))


def wilson(k: int, n: int) -> str:
    low, high = stats_oracle.wilson(k, n)  # the closed form (the package uses scipy)
    return f"[{pct(low)}, {pct(high)}]"


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
    methods_header: list[str] = field(default_factory=list)
    methods: list[list[str]] = field(default_factory=list)
    throughput_header: list[str] = field(default_factory=list)
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
    for summary_path in sorted((root / "eval").glob("*/*/bs*/summary.json")):
        summary = json.loads(summary_path.read_text())
        rows = read_rollouts(summary_path.parent / "rollouts.jsonl")
        runs[(summary["checkpoint"], summary["batch_size"])] = (rows, summary)
    return dict(sorted(runs.items(), key=lambda kv: (kv[0][0] != "base", kv[0])))


THROUGHPUT_HEADER = [
    "checkpoint",
    "sampler",
    "batch size",
    "examples/s",
    "tokens/s",
    "generated tokens",
]
THROUGHPUT_HEADER += ["wall time (s)", "peak memory (MB)"]


def optional(runs: dict, key: str) -> bool:
    """Whether any summary has the optional field `key`."""
    return any(summary.get(key) is not None for _, summary in runs.values())


def method_names(runs: dict) -> list[str]:
    """Methods of the summaries' accuracy_by_method and the rollouts' correct_by_method."""
    names = {
        m
        for rows, s in runs.values()
        for m in [*s["accuracy_by_method"], *rows[0]["correct_by_method"]]
    }
    return sorted(names)


def method_value(rows: list[dict], summary: dict, method: str) -> str:
    if all(method in r["correct_by_method"] for r in rows):
        return pct(sum(r["correct_by_method"][method] for r in rows) / len(rows))
    value = summary["accuracy_by_method"].get(method)
    return "n/a" if value is None else pct(value)


def expect_runs(exp: Expected, runs: dict[tuple[str, int], tuple[list[dict], dict]]) -> None:
    names = method_names(runs)
    primary = {s["primary_method"] for _, s in runs.values()}
    exp.methods_header = ["checkpoint", "sampler", "batch size"]
    exp.methods_header += [f"{m} (primary)" if m in primary else m for m in names]
    exp.throughput_header = list(THROUGHPUT_HEADER)
    compile_s, slots = optional(runs, "compile_seconds"), optional(runs, "slot_utilization")
    exp.throughput_header += ["compile time (s)"] * compile_s + ["slot utilisation"] * slots
    for (ckpt, bs), (rows, summary) in runs.items():
        peak = summary["peak_memory_mb"]
        k, n = sum(r["correct"] for r in rows), len(rows)
        model = summary["model_source"] or "n/a"
        sampler = summary["sampler"]
        exp.summary.append(
            [model, ckpt, sampler, str(bs), str(k), str(n), pct(k / n), wilson(k, n), stderr(k, n)]
        )
        exp.methods.append(
            [ckpt, sampler, str(bs), *(method_value(rows, summary, m) for m in names)]
        )
        exp.throughput.append(
            [
                ckpt,
                sampler,
                str(bs),
                f"{summary['examples_per_second']:.2f}",
                f"{summary['tokens_per_second']:.1f}",
                str(sum(len(r["tokens"]) for r in rows)),
                f"{n / summary['examples_per_second']:.1f}",
                "n/a" if peak is None else f"{peak:.0f}",
            ]
        )
        if compile_s:
            value = summary.get("compile_seconds")
            exp.throughput[-1].append("n/a" if value is None else f"{value:.1f}")
        if slots:
            value = summary.get("slot_utilization")
            exp.throughput[-1].append("n/a" if value is None else pct(value))
        max_steps = sum(r["stop_reason"] == "max_steps" for r in rows)
        exp.add(max_steps, n, bs, *exp.summary[-1][3:], *exp.methods[-1], *exp.throughput[-1])
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
            # shown in full under "Batch dependence" when it is one of the examples listed there
            w["in_batch_dependence"] = a["id"] in listed_examples(runs, ckpt, bs)
            if not w["in_batch_dependence"]:
                exp.blocks += [
                    a["response"][max(0, c - CONTEXT_CHARS) : c],
                    a["response"][c : c + CONTEXT_CHARS],
                    b["response"][c : c + CONTEXT_CHARS],
                ]
        for row in [*table, *exp.worst.get(ckpt, {}).get("logits", [])]:
            exp.add(*row)


def listed_examples(runs: dict, ckpt: str, bs: int) -> list[int]:
    """Ids the batch-dependence section shows for (ckpt, bs) against the smallest batch size:
    the correctness flips, else the diverging examples, earliest divergence first, at most 3."""
    ref_bs = min(b for c, b in runs if c == ckpt)
    ref = {r["id"]: r for r in runs[(ckpt, ref_bs)][0]}
    pairs = [
        (ref[r["id"]], r) for r in runs[(ckpt, bs)][0] if r["tokens"] != ref[r["id"]]["tokens"]
    ]
    firsts = sorted(pairs, key=lambda p: (first_diff(p[0]["tokens"], p[1]["tokens"]), p[0]["id"]))
    flipped = [p for p in firsts if p[0]["correct"] != p[1]["correct"]]
    return [a["id"] for a, _ in (flipped or firsts)[:3]]


def flat(text: str, width: int) -> str:
    """The report's `shorten` filter at `width` (re-implemented)."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p by hand (the package uses scipy's binomtest)."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, j) for j in range(min(b, c) + 1)) / 2**n)


def expect_batch_dependence(exp: Expected, runs: dict) -> None:
    """The batch-dependence table, the headline and the flipped examples (one sampler)."""
    changed_total = total = answers = 0
    for ckpt in dict.fromkeys(c for c, _ in runs):
        sizes = sorted(bs for c, bs in runs if c == ckpt)
        ref_rows = {r["id"]: r for r in runs[(ckpt, sizes[0])][0]}
        for bs in sizes[1:]:
            rows = {r["id"]: r for r in runs[(ckpt, bs)][0]}
            pairs = [(ref_rows[i], rows[i]) for i in sorted(ref_rows)]
            n, same = len(pairs), sum(a["tokens"] == b["tokens"] for a, b in pairs)
            changed_total, total = changed_total + n - same, total + n
            answers += sum(a["extracted_answer"] != b["extracted_answer"] for a, b in pairs)
            firsts = sorted(
                (first_diff(a["tokens"], b["tokens"]), a["id"], a, b)
                for a, b in pairs
                if a["tokens"] != b["tokens"]
            )
            ks = [k for k, *_ in firsts]
            to_wrong = sum(a["correct"] and not b["correct"] for a, b in pairs)
            to_right = sum(b["correct"] and not a["correct"] for a, b in pairs)
            acc_a = sum(a["correct"] for a, _ in pairs) / n
            acc_b = sum(b["correct"] for _, b in pairs) / n
            exp.add(n, same, pct(same / n), pct(acc_a), pct(acc_b), pp(acc_b - acc_a))
            exp.add(p_text(mcnemar_p(to_wrong, to_right)), to_wrong + to_right, to_wrong, to_right)
            if ks:
                median = (ks[(len(ks) - 1) // 2] + ks[len(ks) // 2]) / 2
                exp.add(min(ks), f"{median:g}", max(ks), len(ks))
            flipped = [f for f in firsts if f[2]["correct"] != f[3]["correct"]]
            for k, _, a, b in (flipped or firsts)[:3]:
                exp.add(a["id"], k, a["tokens"][k], b["tokens"][k], a["gold"])
                exp.add(f"{a['token_logits'][k]:.4f}", f"{b['token_logits'][k]:.4f}")
                exp.add(a["extracted_answer"], b["extracted_answer"])
                c = first_diff(list(a["response"]), list(b["response"]))
                exp.masks.append(flat(a["question"], 400))
                texts = [a["response"][max(0, c - CONTEXT_CHARS) : c]]
                texts += [
                    a["response"][c : c + CONTEXT_CHARS],
                    b["response"][c : c + CONTEXT_CHARS],
                ]
                exp.masks += [flat(t, 200).replace("`", "'") for t in texts]
    exp.add(changed_total, total, answers)


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
        low, high = stats_oracle.paired_bootstrap(a, b)  # numpy, not the code under test
        n = len(rows)
        exp.comparisons[ckpt] = {
            "p": p_text(min(1.0, 2 * p)),
            "ci": f"[{pp(low)}, {pp(high)}]",
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
    exp.add(pct(best), len(runs))  # with one checkpoint, the finding counts its runs


def expect_inputs(exp: Expected, root: Path, runs: dict) -> None:
    """Numbers the report copies from inputs the test wrote (settings, manifests, config)."""
    exp.add(*DECLARED, 256, "1, 106", 0, DATASET["rows"], 500, 3)
    # The few-shot count is shown only for runs with the few-shot prompt template.
    exp.add(*(s["num_shots"] for _, s in runs.values() if s["prompt_template"] == "fewshot"))
    exp.masks += [str(s[k]) for _, s in runs.values() for k in ("xla_flags",) if s.get(k)]
    exp.masks += [COMMAND, MODEL, SHA, CONFIG_HASH, LORA_SOURCE]
    exp.masks += list(VERSIONS.values())
    exp.masks += [p.relative_to(root.parent).as_posix() for p in root.rglob("*") if p.is_file()]


def expected_for(root: Path) -> Expected:
    exp = Expected()
    runs = load_fixture(root)
    expect_runs(exp, runs)
    expect_invariance(exp, runs)
    expect_batch_dependence(exp, runs)
    expect_comparisons(exp, runs)
    expect_best(exp, runs)
    expect_inputs(exp, root, runs)
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


def bullets(md: str, heading: str) -> list[str]:
    """The '- ' items of a section, each joined onto one line."""
    return [" ".join(b.split()) for b in re.findall(r"^- (.*)$", section(md, heading), re.M)]


def divergent(root: Path, ckpt: str, bs: int, ref_bs: int) -> int:
    runs = load_fixture(root)
    ref = {r["id"]: r["tokens"] for r in runs[(ckpt, ref_bs)][0]}
    return sum(r["tokens"] != ref[r["id"]] for r in runs[(ckpt, bs)][0])
