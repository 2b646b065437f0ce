"""The evaluate stage (generation only; grading is the `score` stage, `gsm8k_eval.grading`).

`options` (what one evaluation depends on), `workload` (examples, prompts, model, sampler),
`shards` (resumable shard running and merging), `rows` (one generations.jsonl line), `record`
(generation.json: timings, tokens, provenance) and `run` (the stage, on top).
"""
