"""Tests for gsm8k_eval.report: every number of a report rendered from fixture rollouts.

The fixture (tests/report_fixture.py) writes a results tree with planted batch-size divergences
and checkpoint fixes/breaks. Every number of the rendered markdown is then checked against an
independent recomputation (tests/report_expected.py) from the rollouts plus the inputs the test
itself wrote (measured throughput, manifests, config); findings and recommendations are checked
word for word.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from report_expected import (
    THROUGHPUT_HEADER,
    Expected,
    bullets,
    divergent,
    expected_for,
    load_fixture,
    numbers,
    pct,
    section,
    table_rows,
    tables,
    unexplained_numbers,
    wilson,
)
from report_fixture import (
    BROKEN,
    COMMAND,
    CONFIG,
    CONFIG_HASH,
    DATASET,
    FIXED,
    LORA_SOURCE,
    MEASURED,
    MODEL,
    SHA,
    SUMMARY_SETTINGS,
    VERSIONS,
    N,
    question,
    record,
    render,
    response,
    rollouts_for,
    schema_run_name,
    write_tree,
)

from gsm8k_eval.report import (
    DEFAULT_TEMPLATE_DIR,
    ReportDataError,
    config_to_show,
    render_report_from_results,
)


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
    assert exp.methods_header == [
        "checkpoint",
        "sampler",
        "batch size",
        "flexible",
        "strict (primary)",
    ]
    assert [rows for h, rows in tables(md) if h == exp.methods_header] == [exp.methods]
    assert exp.throughput_header == THROUGHPUT_HEADER  # no optional columns without the fields
    assert [rows for h, rows in tables(md) if h == exp.throughput_header] == [exp.throughput]
    assert "compile" not in md.lower() and "utilisation" not in md


def test_invariance_tables_and_worst_divergence(full: tuple[Path, str, Expected]) -> None:
    _, md, exp = full
    inv = section(md, "## Batch invariance")
    for ckpt, rows in exp.invariance.items():
        sub = section(inv, f"### {ckpt} (fixed sampler)")
        assert table_rows(sub, "batch sizes") == rows
    assert set(exp.worst) == {"base"}  # lora_final is invariant
    assert "all batch sizes produced identical tokens" in section(
        inv, "### lora_final (fixed sampler)"
    )
    w = exp.worst["base"]
    assert (w["id"], w["k"], w["bs"]) == (7, 25, 4)  # the planted flip outranks the earlier one
    sub = section(inv, "### base (fixed sampler)")
    assert table_rows(sub, "batch size", "token id at first difference") == w["logits"]
    assert f"first differing token is at index {w['k']}" in " ".join(sub.split())
    assert f"`[{', '.join(map(str, w['ref_tokens']))}]`" in sub
    assert f"`[{', '.join(map(str, w['other_tokens']))}]`" in sub
    assert "Correctness flips: correct at batch size 1, wrong at batch size 4." in sub
    # the batch-dependence section shows this example in full: referred to, not repeated
    assert w["in_batch_dependence"]
    flat = " ".join(sub.split())
    assert "shown with its question and both continuations under [Batch dependence]" in flat
    assert "```text" not in sub and question(7) not in sub
    assert md.count("#### Example 7\n") == 1


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


LAYOUT_TEMPLATES = sorted(  # protocols.md.j2: compare-protocols' own page (test_report_protocols)
    p.name
    for p in DEFAULT_TEMPLATE_DIR.glob("*.j2")
    if p.name not in {"_macros.md.j2", "protocols.md.j2"}
)


@pytest.mark.parametrize("name", LAYOUT_TEMPLATES)
def test_hard_coded_number_in_template_is_caught(
    full: tuple[Path, str, Expected], tmp_path: Path, name: str
) -> None:
    root, _, exp = full
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATE_DIR, templates)
    template = templates / name
    template.write_text(template.read_text() + "\nLast week's accuracy was 61.3%.\n")
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
    assert table_rows(md, "item") == [
        ["workflow git commit (at rendering)", "not recorded"],  # no workflow folder given
        ["model revision (config)", "not pinned"],
        *([label, "n/a"] for label in FINGERPRINT_LABELS),  # summaries without a fingerprint
        ["device", SUMMARY_SETTINGS["device"]],
        ["XLA flags", "none"],
        ["config hash", CONFIG_HASH],
        ["dataset sha256 (summaries)", SHA],
        *([f"dataset {k} (manifest)", str(v)] for k, v in DATASET.items()),
        ["dataset checksum matches manifest", "yes"],
    ]
    assert dict(map(tuple, table_rows(md, "package"))) == VERSIONS
    assert "External reference" not in md and "60%" not in md  # none configured
    scope = " ".join(section(md, "## Provenance").split())
    assert "on the same hardware kind (the device above), with the same library versions" in scope
    assert "results/eval/base/fixed/bs4/rollouts.jsonl" in section(md, "## Output files")


FINGERPRINT_LABELS = [
    "code sha256 (evaluation)",
    "model files sha256",
    "checkpoint sha256",
    "rendered prompts sha256",
]


def test_external_reference_only_when_configured(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_tree(root, {("base", 1): rollouts_for("base", 1)})
    reference = {"label": "lm-eval gsm8k 5-shot, another model", "accuracy": 0.6, "source": "a URL"}
    md = render(root, config={**CONFIG, "report": {"external_reference": reference}})
    external = " ".join(section(md, "## External reference").split())
    assert (
        "> **Not a result of this pipeline.** lm-eval gsm8k 5-shot, another model: accuracy "
        "60.0% (source: a URL)."
    ) in external


def test_provenance_of_a_git_checkout_and_fingerprinted_runs(tmp_path: Path) -> None:
    root = tmp_path / "results"
    digests = {"code_sha256": "c0de", "model_sha256": "m0de1", "prompts_sha256": "9a"}
    plugin = {"jax-cuda12-plugin": "0.10.2"}  # fingerprints list the installed PJRT plugins
    fingerprint = {**digests, "checkpoint_sha256": None, "versions": plugin}
    settings = {"fingerprint": fingerprint, "xla_flags": "--xla_x=1"}
    write_tree(root, {("base", 1): rollouts_for("base", 1)}, settings)
    repo = tmp_path / "workflow"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "Snakefile").write_text("rule all:\n")
    subprocess.run([*git, "add", "Snakefile"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    config = {**CONFIG, "model": {"source": MODEL, "revision": "abc123"}}
    items = dict(map(tuple, table_rows(render(root, config=config, workflow_dir=repo), "item")))
    assert items["workflow git commit (at rendering)"] == commit.strip()
    assert items["model revision (config)"] == "abc123"
    assert [items[label] for label in FINGERPRINT_LABELS] == ["c0de", "m0de1", "n/a", "9a"]
    assert items["XLA flags"] == "--xla_x=1"
    packages = dict(map(tuple, table_rows(render(root, config=config), "package")))
    assert packages == {**VERSIONS, **plugin}
    (repo / "Snakefile").write_text("rule all:\n    input: []\n")
    items = dict(map(tuple, table_rows(render(root, config=config, workflow_dir=repo), "item")))
    assert (
        items["workflow git commit (at rendering)"] == f"{commit.strip()} with uncommitted changes"
    )
    items = dict(map(tuple, table_rows(render(root, workflow_dir=tmp_path / "results"), "item")))
    assert items["workflow git commit (at rendering)"].startswith("none (")


def test_lm_eval_methods_carry_lm_eval_metric_names(tmp_path: Path) -> None:
    root = tmp_path / "results"
    rows = rollouts_for("base", 1)
    for r in rows:
        r["correct_by_method"] = {"strict-match": r["correct"], "flexible-extract": True}
    write_tree(root, {("base", 1): rows}, {"primary_method": "strict-match"})
    md = render(root)
    methods = section(md, "## Accuracy by extraction method")
    strict_match = pct(sum(r["correct"] for r in rows) / N)
    assert table_rows(methods, "checkpoint")[0][3:] == ["100.0%", strict_match]
    header = next(h for h, _ in tables(methods))
    assert header[3:] == [
        "flexible-extract (lm-eval `exact_match,flexible-extract`)",
        "strict-match (lm-eval `exact_match,strict-match`) (primary)",
    ]
    assert "export-lm-eval" in methods and "`results/<run>/lm-eval/`" in methods


def test_degenerate_base_only_one_batch_size_accuracy_zero(tmp_path: Path) -> None:
    root = tmp_path / "results"
    rows = [record("base", 2, i, response("base", i, False), False) for i in range(5)]
    write_tree(root, {("base", 2): rows})
    md = render(root)
    exp = expected_for(root)
    assert table_rows(md, "model") == exp.summary
    assert exp.summary[0][6:] == ["0.0%", wilson(0, 5), "0.0%"]  # standard error 0
    (throughput,) = [rows for h, rows in tables(md) if "peak memory (MB)" in h]
    assert throughput == exp.throughput and throughput[0][-1] == "n/a"
    assert "only batch size 2: nothing to compare" in md
    one = "**One checkpoint evaluated (base):** accuracy 0.0% with the fixed sampler at batch"
    assert f"{one} size 2, its smallest." in md
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
    summary_path = root / "eval" / "base" / "fixed" / "bs1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps(dict(summary, correct=summary["correct"] + 1)))
    with pytest.raises(ReportDataError, match="summary says"):
        render(root)


def test_render_report_from_results_discovers_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # paths in the report are relative to the working directory
    root = tmp_path / "results"
    write_tree(root, {(c, 1): rollouts_for(c, 1) for c in ("base", "lora_final")})
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "out" / "report.md"
    assert render_report_from_results(root, out, config_path, COMMAND) == out
    md = out.read_text()
    assert (tmp_path / "out" / "figures" / "accuracy.png").is_file()
    assert table_rows(md, "checkpoint", "source") == [
        ["base", "base", "n/a", "n/a", "results/checkpoints/base/manifest.json"],
        ["lora_final", LORA_SOURCE, "500", "3", "results/checkpoints/lora_final/manifest.json"],
    ]
    assert f"```bash\n{COMMAND}\n```" in md
    assert "### lora_final vs base" in md
    assert config_to_show(config_path) == CONFIG and config_to_show(CONFIG) == CONFIG
    assert config_to_show(None) == {}


# ---------------------------------------------------------------- wording decided from numbers


def test_findings_are_decided_from_numbers(full: tuple[Path, str, Expected]) -> None:
    root, md, exp = full
    runs = load_fixture(root)
    cmp = exp.comparisons["lora_final"]
    acc = {key: sum(r["correct"] for r in rows) / N for key, (rows, _) in runs.items()}
    (inv_row,) = exp.invariance["base"]
    assert not cmp["significant"]
    assert bullets(md, "## Key findings") == [
        f"**Best checkpoint:** lora_final (batch size 1): accuracy {pct(acc[('lora_final', 1)])} "
        "at its smallest batch size.",
        f"**lora_final vs base:** {pct(acc[('base', 1)])} → {pct(acc[('lora_final', 1)])} "
        f"({cmp['delta']}) on {N} paired examples at batch size 1; {len(FIXED)} fixed, "
        f"{len(BROKEN)} broken; McNemar exact p = {cmp['p']}. At α = 0.05 the difference is not "
        "statistically significant by the exact McNemar test (two-sided); it is consistent with "
        "no real change.",
        f"**Batch invariance violated:** base (fixed): {divergent(root, 'base', 4, 1)} of {N} "
        f"examples differ between batch size 1 and 4 (accuracy difference {inv_row[6]}, "
        f"correctness flips: {inv_row[7]}).",
    ]


def test_recommendations_are_decided_from_numbers(full: tuple[Path, str, Expected]) -> None:
    root, md, _ = full
    runs = load_fixture(root)
    reasons = [r["stop_reason"] for r in runs[("base", 1)][0]]
    at_limit = reasons.count("max_steps")
    # Only generations ended by the step limit count, not those ended by a stop sequence.
    assert at_limit == 1 and reasons.count("stop_sequence") == 1
    assert bullets(md, "## Recommendations") == [
        f"Generations of base with the fixed sampler depend on the batch size (batch size 4: "
        f"{divergent(root, 'base', 4, 1)} of {N} examples diverge from batch size 1); report "
        "results at one fixed batch size, or use the batch-invariant sampler.",
        f"The difference between lora_final and base is within noise on {N} examples; evaluate "
        "more examples before drawing conclusions.",
        f"Runs covered {N} of the {DATASET['rows']} test examples; run without an example limit "
        "for final numbers.",
        *(
            f"{at_limit} of {N} generations of base (fixed sampler) at batch size {bs} stopped at "
            "the step limit "
            f"({SUMMARY_SETTINGS['max_generation_steps']}); consider raising "
            "max_generation_steps."
            for bs in (1, 4)
        ),
    ]


def test_no_step_limit_advice_without_max_steps_rows(tmp_path: Path) -> None:
    root = tmp_path / "results"
    rows = [dict(r, stop_reason="stop_sequence") for r in rollouts_for("base", 1)]
    write_tree(root, {("base", 1): rows})
    md = render(root)
    assert not [b for b in bullets(md, "## Recommendations") if "step limit" in b]
    assert unexplained_numbers(md, expected_for(root)) == []


def test_fastest_batch_size_advice_when_invariant(tmp_path: Path) -> None:
    root = tmp_path / "results"
    runs = {("base", bs): rollouts_for("lora_final", bs) for bs in (1, 4)}
    runs = {key: [dict(r, checkpoint="base") for r in rows] for key, rows in runs.items()}
    write_tree(root, runs)
    md = render(root)
    (bs, speed) = max(((bs, MEASURED[("base", bs)][0]) for bs in (1, 4)), key=lambda x: x[1])
    assert (
        f"Generations do not depend on the batch size, so pick it for speed: batch size {bs} was "
        f"fastest ({speed:.2f} examples/s, base)."
    ) in bullets(md, "## Recommendations")
    assert unexplained_numbers(md, expected_for(root)) == []


# ---------------------------------------------------------------- title and configuration


def test_title_is_the_run_name_or_the_schema_default(
    full: tuple[Path, str, Expected], tmp_path: Path
) -> None:
    root, md, _ = full
    assert md.splitlines()[0] == f"# GSM8K evaluation report: {schema_run_name()}"
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    named = render(copy, config=dict(CONFIG, run_name="seed study"))
    assert named.splitlines()[0] == "# GSM8K evaluation report: seed study"


def test_chat_template_configuration_has_no_few_shot_count(
    full: tuple[Path, str, Expected],
) -> None:
    _, md, _ = full
    s = SUMMARY_SETTINGS
    assert table_rows(md, "setting") == [
        ["model source", MODEL],
        ["prompt template", "chat"],
        ["max generation steps", str(s["max_generation_steps"])],
        ["EOS token ids", ", ".join(map(str, s["eos_tokens"]))],
        ["temperature", str(s["temperature"])],
        ["primary extraction method", s["primary_method"]],
        ["dtype", s["dtype"]],
        ["sampler", s["sampler"]],
        ["decode rows per call", "n/a"],
        ["stop sequences", "none (EOS only)"],
        ["extraction methods", "flexible, strict"],
    ]
    assert "few-shot" not in md
