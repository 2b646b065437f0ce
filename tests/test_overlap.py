"""The caller's work overlaps the engine's next decode segment: `Engine.stream` dispatches
the next segment before it yields the generations that ended (tiny random Gemma 3, float32 and
bfloat16; the bits stay the static oracle's), and `benchmarks/overlap_check.py` runs."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from bench_scripts import run_on_tiny
from test_engine import SEGMENT
from test_sampler import LENGTHS, TINY, StandInTokenizer, random_prompts, tiny_model

from gsm8k_eval.sampling import Generation, StaticSampler
from gsm8k_eval.sampling.engine import Engine, Slots


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def tiny(request):
    """dtype, model, prompts and the static oracle's outputs."""
    model = tiny_model(request.param)
    prompts = random_prompts(LENGTHS, seed=1)
    return (
        request.param,
        model,
        prompts,
        StaticSampler(model, StandInTokenizer(), TINY).generate(prompts),
    )


class RecordsSegments(Engine):
    """Logs segment dispatches and reads, so a test can see what runs during a yield."""

    def _start_segment(self, slots: Slots):
        self.events.append("start")
        outputs = super()._start_segment(slots)
        assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(outputs))  # not read back
        return outputs

    def _finish_segment(self, segment):
        self.events.append("finish")
        return super()._finish_segment(segment)


def test_generations_are_yielded_while_the_next_segment_runs(tiny):
    """A generation that ends while other rows still run is yielded after the next segment was
    dispatched (its outputs device arrays, not read back) and before it is read, so the
    caller's work can overlap the device's (JAX dispatch is asynchronous; what that hides is
    measured by benchmarks/overlap_check.py, not here); the bits are the oracle's."""
    dtype, model, prompts, oracle = tiny
    sampler = RecordsSegments(model, StandInTokenizer(), TINY, segment_steps=SEGMENT)
    sampler.events = events = []
    budgets = [1 + (5 * i) % TINY.max_generation_steps for i in range(len(prompts))]
    out: dict[int, Generation] = {}
    for index, generation in sampler.stream(prompts, max_in_flight=3, max_new_tokens=budgets):
        out[index] = generation
        events.append(index)
    finishes = [i for i, e in enumerate(events) if e == "finish"]
    overlapped = 0
    for position, event in enumerate(events):
        if isinstance(event, int) and any(f > position for f in finishes):
            segment_events = [e for e in events[:position] if isinstance(e, str)]
            assert segment_events[-1:] == ["start"], (dtype, events[: position + 1])
            overlapped += 1
    assert overlapped >= len(prompts) - 3, events
    for i, ref in enumerate(oracle):
        n = budgets[i]
        assert out[i].tokens == ref.tokens[:n], dtype
        assert np.array_equal(np.float32(out[i].token_logits), np.float32(ref.token_logits[:n]))


def test_overlap_benchmark_runs_and_checks_its_outputs(tmp_path):
    """benchmarks/overlap_check.py's plumbing on the tiny model (its numbers mean something on
    the 270M only): idle, waiting and busy callers, nothing compiled inside a timed run; it
    exits non-zero if a caller changed an output."""
    out = run_on_tiny(
        "overlap_check.py",
        tmp_path,
        ["--prompts", "3", "--tokens", "4", "--bs", "2", "--dtype", "float32",
         "--wait-ms", "2", "--busy-ms", "2"],
    )  # fmt: skip
    runs = json.loads(out.read_text())["runs"]
    assert list(runs) == ["idle", "wait", "busy", "idle-again"]
    assert runs["wait"]["caller_s"] >= 3 * 0.002 and runs["idle"]["caller_s"] == 0
    assert all(run["compile_s"] == 0.0 for run in runs.values())
    assert "hidden_share" in runs["wait"] and "hidden_share" in runs["busy"]
    assert len({run["outputs_sha256"] for run in runs.values()}) == 1
