"""Reproducible, batch-invariant GSM8K evaluation of JAX/tunix language models."""

__version__ = "0.1.0"
