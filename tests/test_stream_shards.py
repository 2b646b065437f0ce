"""Shards do not drain the engine (issue 21 §2): `Engine.stream` yields each generation as its
row ends, and `run_shards` streams the prompts of all unfinished shards through one engine
call, writing each shard as soon as it is complete. Oracle: the per-shard path (one `generate`
call per shard, the behaviour before streaming), reached by hiding `stream` from run_shards."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from shared_data import GSM8K_DIR
from test_sampler import same

from gsm8k_eval.evaluate import EvaluateOptions
from gsm8k_eval.evaluation.shards import (
    current_fingerprint,
    merge_shards,
    prepare_shard_dir,
    request_key_data,
    run_shards,
    selected_ranges,
    shard_paths,
)
from gsm8k_eval.evaluation.workload import prepare
from gsm8k_eval.models import fetch_model

pytestmark = pytest.mark.usefixtures("gsm8k_dir")  # fails, never skips, without ../shared

LIMIT = 12  # questions
ROWS = 8  # decode_rows
# Every fourth byte-level id ends a row: the random model's rows stop at mixed lengths
# (1..STEPS tokens), so a shard's last segment waits for its slowest row.
EOS = tuple(range(1, 300, 4))
STEPS = 12
TIMING_KEYS = {
    "prefill_seconds",
    "decode_seconds",
    "compile_seconds",
    "useful_row_steps",
    "executed_row_steps",
    "slot_utilization",
}


class PerShard:
    """The engine without `stream`: run_shards makes one `generate` call per shard."""

    def __init__(self, sampler) -> None:
        self.sampler = sampler

    def generate(self, *args, **kwargs):
        return self.sampler.generate(*args, **kwargs)

    @property
    def last_timing(self):
        return self.sampler.last_timing


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The tiny model and a dataset of GSM8K questions cut to 4..15 characters, so that every
    chat prompt fits one 128-token prefill bucket (one prefill program to compile)."""
    root = tmp_path_factory.mktemp("stream-inputs")
    lines = (GSM8K_DIR / "test.jsonl").read_text().splitlines()[:LIMIT]
    rows = [json.loads(line) for line in lines]
    for i, row in enumerate(rows):
        row["question"] = row["question"][: 4 + i]
    dataset = root / "test.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return fetch_model("random:tiny", root / "model"), dataset


@pytest.fixture(scope="module", params=["greedy", "sampled"])
def work(request, inputs, tmp_path_factory):
    """Options and the prepared workload (model, engine, prompts) of a greedy or sampled run."""
    sampled = {"temperature": 0.9, "num_samples": 2} if request.param == "sampled" else {}
    model_dir, dataset = inputs
    options = EvaluateOptions(
        dataset_path=dataset,
        model_dir=model_dir,
        output_dir=tmp_path_factory.mktemp("stream-work"),
        batch_size=1,
        limit=LIMIT,
        max_generation_steps=STEPS,
        max_prompt_length=128,
        eos_tokens=EOS,
        decode_rows=ROWS,
        segment_steps=4,
        prefill_rows=2,
        device="cpu",
        **sampled,
    )
    return options, prepare(options)


def _with(options: EvaluateOptions, out, **changes) -> EvaluateOptions:
    return replace(options, output_dir=out, **changes)


def evaluate_shards(options, work, sampler=None):
    """run_shards + merge_shards as the evaluate stage calls them: (generations.jsonl bytes,
    the ShardRun); `sampler` replaces the workload's (e.g. `PerShard`)."""
    work = work if sampler is None else replace(work, sampler=sampler)
    current = current_fingerprint(options, work.prompts)
    shard_dir = prepare_shard_dir(options, current)
    ranges = selected_ranges(options, len(work.examples))
    run = run_shards(options, work, shard_dir, current, ranges)
    out = merge_shards(options, shard_dir, len(work.examples), run.digest)
    return out.read_bytes(), run


def keys_of(options, prepared, count: int) -> dict:
    """`keys=` for the first `count` requests of a sampled run; nothing if greedy."""
    if prepared.sample_indices is None:
        return {}
    examples, indices = prepared.examples[:count], prepared.sample_indices[:count]
    return {"keys": request_key_data(options.sampling_seed, examples, indices)}


def row_steps(run) -> tuple[float, float]:
    return (
        sum(s.useful_row_steps for s in run.stats),
        sum(s.executed_row_steps for s in run.stats),
    )


@pytest.fixture(scope="module")
def per_shard(work, tmp_path_factory):
    """The per-shard path's output at each batch size (shards of 8 examples)."""
    options, prepared = work
    out = {}
    for bs in (1, 3, 8):
        folder = tmp_path_factory.mktemp(f"per-shard-bs{bs}")
        opts = _with(options, folder, batch_size=bs, shard_size=ROWS)
        out[bs] = evaluate_shards(opts, prepared, PerShard(prepared.sampler))
    return out


# -- the engine's stream -------------------------------------------------------------------------


def test_stream_yields_generate_bits_as_rows_end_with_live_counters(work):
    """Completion order (budgets 1..STEPS make it differ from input order), each generation
    bitwise `generate`'s; the row-step counters are current at every yield; arguments are
    checked when `stream` is called, before anything is computed."""
    options, prepared = work
    sampler, prompts = prepared.sampler, prepared.prompt_ids
    budgets = [1 + (5 * i) % STEPS for i in range(len(prompts))]
    extra = keys_of(options, prepared, len(prompts))
    expected = sampler.generate(prompts, max_in_flight=3, max_new_tokens=budgets, **extra)
    shared = {"prefill_rows_shared"} if extra else set()  # a sampled engine counts sharing
    assert set(sampler.last_timing) == TIMING_KEYS | shared
    after_generate = dict(sampler.last_timing)
    order, useful = [], 0
    for index, generation in sampler.stream(
        prompts, max_in_flight=3, max_new_tokens=budgets, **extra
    ):
        assert same(generation, expected[index]), index
        order.append(index)
        useful += len(generation.tokens) - 1
        assert sampler.last_timing["useful_row_steps"] == useful
    assert sorted(order) == list(range(len(prompts))) and order != sorted(order)
    for key in ("useful_row_steps", "executed_row_steps", "slot_utilization"):
        assert sampler.last_timing[key] == after_generate[key], key
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        sampler.stream([[2, 3], []], **keys_of(options, prepared, 2))


# -- run_shards streams across shard boundaries --------------------------------------------------


@pytest.mark.parametrize(
    "bs, shard_size",
    [(1, 3), (1, ROWS), (1, 13), (3, 3), (3, ROWS), (8, ROWS), (8, 13)],
)
def test_streamed_shards_equal_the_per_shard_path(work, per_shard, bs, shard_size, tmp_path):
    """generations.jsonl byte for byte (tokens, float32 logits, texts), with shards smaller
    than, as large as and larger than decode_rows; every shard's counts exact."""
    options, prepared = work
    opts = _with(options, tmp_path, batch_size=bs, shard_size=shard_size)
    streamed, run = evaluate_shards(opts, prepared)
    expected, reference = per_shard[bs]
    assert streamed == expected, (bs, shard_size)
    assert len(run.stats) == -(-len(prepared.examples) // opts.shard_examples)
    assert [s.examples for s in run.stats] == [
        end - start for _, start, end in selected_ranges(opts, len(prepared.examples))
    ]
    assert sum(s.generated_tokens for s in run.stats) == sum(
        s.generated_tokens for s in reference.stats
    )
    assert row_steps(run)[0] == row_steps(reference)[0]  # the kept tokens, however charged
    # each shard's wall window holds the engine work charged to it
    engine_seconds = sum(
        s.prefill_seconds + s.decode_seconds + s.compile_seconds for s in run.stats
    )
    assert sum(s.wall_seconds for s in run.stats) >= engine_seconds > 0


def test_the_rows_end_at_mixed_lengths(per_shard):
    """The premise of the utilisation test: rows of one shard end at different steps."""
    rows = [json.loads(line) for line in per_shard[1][0].decode().splitlines()]
    lengths = {len(row["tokens"]) for row in rows}
    assert len(lengths) >= 4, lengths


def test_streaming_keeps_the_slots_busier_than_per_shard_calls(work, tmp_path):
    """Shards of 4 examples at bs 4 (fewer than the 8 slots): per-shard calls wait for each
    shard's slowest row, streaming refills its slots; same useful row-steps, fewer executed."""
    options, prepared = work
    opts = _with(options, tmp_path / "streamed", batch_size=4, shard_size=4)
    streamed, run = evaluate_shards(opts, prepared)
    opts = _with(options, tmp_path / "per-shard", batch_size=4, shard_size=4)
    expected, reference = evaluate_shards(opts, prepared, PerShard(prepared.sampler))
    assert streamed == expected
    (useful, executed), (ref_useful, ref_executed) = row_steps(run), row_steps(reference)
    assert useful == ref_useful > 0
    assert executed < ref_executed, (executed, ref_executed)
    assert useful / executed > ref_useful / ref_executed


def test_an_interrupted_stream_resumes_from_the_shards_it_wrote(work, per_shard, tmp_path):
    """The stream raises after 7 generations: the shards completed by then are on disk; the
    rerun reuses them untouched, streams only the other shards' prompts and gives the same
    bytes as an uninterrupted run."""
    options, prepared = work
    opts = _with(options, tmp_path, batch_size=3, shard_size=3)
    sampler = prepared.sampler
    real = sampler.stream
    calls = []

    def interrupted(prompts, *args, **kwargs):
        calls.append(len(prompts))
        for count, item in enumerate(real(prompts, *args, **kwargs)):
            if count == 7:
                raise Interrupted
            yield item

    sampler.stream = interrupted
    try:
        with pytest.raises(Interrupted):
            evaluate_shards(opts, prepared)
    finally:
        del sampler.stream
    shard_dir = opts.output_dir / "shards"
    written = sorted(shard_dir.glob("shard-*.jsonl"))
    shards = len(prepared.examples) // opts.shard_examples
    assert 1 <= len(written) < shards, written  # after 7 of 12 requests (24, sampled)
    stamps = {p: p.stat().st_mtime_ns for p in written}

    def counted(prompts, *args, **kwargs):
        calls.append(len(prompts))
        return real(prompts, *args, **kwargs)

    sampler.stream = counted
    try:
        streamed, run = evaluate_shards(opts, prepared)
    finally:
        del sampler.stream
    total = len(prepared.examples)
    assert calls == [total, total - len(written) * opts.shard_examples]
    assert run.resumed == len(written)
    assert {p: p.stat().st_mtime_ns for p in written} == stamps
    assert streamed == per_shard[3][0]
    assert sum(s.examples for s in run.stats) == total
    assert all(shard_paths(shard_dir, i)[1].exists() for i in range(len(run.stats)))
