"""One evaluation split over N Snakemake jobs (evaluation.parallel_jobs) and the shared JAX
compilation cache, end to end on the tiny random model.

Byte-identical means: the gathered rollouts.jsonl has the same bytes as a single job's, and the
gathered summary.json equals the single job's in every field except `gather.JOB_FIELDS` (times,
rates, memory, hosts, job count and cache counters, which depend on how the work ran).
The single job runs without the compilation cache, the split one with it (parts 2 and 3 load
what part 1 compiled), so the identity also shows that a warm cache changes no token or logit.
"""

from __future__ import annotations

import json

import pytest
from pipeline_helpers import run_root, run_snakemake, tiny_config, write_config

from gsm8k_eval.gather import JOB_FIELDS, _check_parts
from gsm8k_eval.parts import is_part_dir, parse_part, part_labels, part_shards

LIMIT = 7  # 4 shards of 2 examples at batch size 2: parts of 1, 1 and 2 shards
BATCH_SIZE = 2


def _run(tmp_path_factory, name: str, evaluation: dict) -> tuple:
    workdir = tmp_path_factory.mktemp(name)
    settings = {"device": "cpu", "shard_size": 2, **evaluation}
    config = tiny_config(limit=LIMIT, batch_sizes=[BATCH_SIZE], evaluation=settings)
    result = run_snakemake(workdir, write_config(workdir, config))
    return run_root(workdir) / "eval" / "base" / "fixed" / f"bs{BATCH_SIZE}", result


@pytest.fixture(scope="module")
def single(tmp_path_factory, gsm8k_dir):
    return _run(tmp_path_factory, "single", {"parallel_jobs": 1, "compilation_cache": None})


@pytest.fixture(scope="module")
def split(tmp_path_factory, gsm8k_dir):
    return _run(tmp_path_factory, "split", {"parallel_jobs": 3})


def _without_job_fields(summary: dict) -> dict:
    """The summary without JOB_FIELDS, and without the checkpoint's fetch time (the two runs
    under comparison are separate pipelines, each fetching at its own time)."""
    kept = {key: value for key, value in summary.items() if key not in JOB_FIELDS}
    kept["checkpoint_manifest"] = dict(kept["checkpoint_manifest"], fetched_at=None)
    return kept


def test_three_jobs_gather_byte_identical_rollouts(single, split):
    (one, _), (three, _) = single, split
    single_bytes = (one / "rollouts.jsonl").read_bytes()
    assert single_bytes.count(b"\n") == LIMIT
    assert (three / "rollouts.jsonl").read_bytes() == single_bytes


def test_gathered_summary_equals_single_job_but_job_fields(single, split):
    (one, _), (three, _) = single, split
    a = json.loads((one / "summary.json").read_text())
    b = json.loads((three / "summary.json").read_text())
    assert (a["parallel_jobs"], b["parallel_jobs"]) == (1, 3)
    assert _without_job_fields(a) == _without_job_fields(b)
    assert (b["total"], b["shards"], len(b["jobs"])) == (LIMIT, 4, 3)
    assert [job["shards"] for job in b["jobs"]] == [[0], [1], [2, 3]]
    assert b["generated_tokens"] == a["generated_tokens"]


def test_split_evaluation_is_three_evaluate_jobs_and_one_gather(single, split):
    (one, one_run), (three, three_run) = single, split
    parts = sorted(p.name for p in (three / "parts").iterdir())
    assert parts == ["1-of-3", "2-of-3", "3-of-3"]
    for part in parts:
        summary = json.loads((three / "parts" / part / "generation.json").read_text())
        assert summary["part"]["of"] == 3
    assert "gather_evaluation" in three_run.stdout + three_run.stderr
    assert not (one / "parts").exists()
    assert "gather_evaluation" not in one_run.stdout + one_run.stderr


def test_compilation_cache_is_shared_by_the_parts(single, split):
    """With --cores 2 the parts run one after another (in an order Snakemake picks): every part
    but the first to run loads programs compiled by an earlier one."""
    (one, _), (three, _) = single, split
    assert json.loads((one / "summary.json").read_text())["compilation_cache"]["dir"] is None
    gathered = json.loads((three / "summary.json").read_text())
    caches = [job["compilation_cache"] for job in gathered["jobs"]]
    assert all(c["dir"].endswith("results/tiny/jax-cache") for c in caches)
    warm = [c for c in caches if c["hits"] > 0]
    assert len(warm) >= 2, caches
    assert sum(c["misses"] for c in caches) > 0  # the first compiled and stored
    # the gathered counters are the jobs' sums (compile_seconds_saved is JAX's estimate from
    # compile times stored in whole seconds, often 0 here: only its sum is checked)
    for key in ("hits", "misses", "compile_seconds_saved"):
        assert gathered["compilation_cache"][key] == pytest.approx(sum(c[key] for c in caches))


def test_report_from_results_counts_each_split_evaluation_once(split, tmp_path):
    """Found by folder search, the parts' own summaries are left out (else: duplicate runs)."""
    from gsm8k_eval.report.render import render_report_from_results

    three, _ = split
    results = three.parents[3]  # results/tiny
    out = render_report_from_results(results, tmp_path / "report.md", None, "snakemake")
    summary = out.read_text().split("## Summary results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in summary.splitlines() if f"| base | fixed | {BATCH_SIZE} |" in line]
    assert len(rows) == 1 and f"| {LIMIT} |" in rows[0]


@pytest.mark.parametrize("shards", [0, 1, 2, 4, 7, 64])
@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_parts_cover_every_shard_once_in_order(shards, count):
    covered = [i for k in range(1, count + 1) for i in part_shards(shards, (k, count))]
    assert covered == list(range(shards))
    sizes = [len(part_shards(shards, (k, count))) for k in range(1, count + 1)]
    assert max(sizes) - min(sizes) <= 1


def test_part_labels_and_errors(tmp_path):
    assert parse_part("2/3") == parse_part("2-of-3") == (2, 3)
    assert part_labels(2) == ["1-of-2", "2-of-2"]
    for bad in ("0/3", "4/3", "x", "1/"):
        with pytest.raises(ValueError, match="part"):
            parse_part(bad)
    assert is_part_dir(tmp_path / "parts" / "1-of-2")
    assert not is_part_dir(tmp_path / "parts" / "other") and not is_part_dir(tmp_path / "1-of-2")


def test_parts_made_on_other_kinds_of_cpu_are_refused_by_name(tmp_path):
    """A part that ran on another kind of CPU (other float32 bits) is named, not gathered."""
    device = {"platform": "cpu", "kind": "cpu", "count": 1}
    summaries = [
        {
            "part": {"index": k, "of": 2, "shards": [k - 1]},
            "fingerprint_sha256": f"{k}" * 64,
            "fingerprint": {"format": 2, "device": dict(device, cpu=cpu)},
        }
        for k, cpu in ((1, "GenuineIntel:avx2+fma"), (2, "AuthenticAMD:avx2+fma"))
    ]
    folders = [tmp_path / "1-of-2", tmp_path / "2-of-2"]
    with pytest.raises(ValueError, match=r"fingerprints differ: device\.cpu\)"):
        _check_parts(folders, summaries)
    summaries[1] = dict(summaries[1], fingerprint_sha256=summaries[0]["fingerprint_sha256"])
    _check_parts(folders, summaries)
