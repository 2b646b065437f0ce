"""Modules of `benchmarks/gpu_bench.py`: shared helpers, throughput sections, XLA flag variants."""
