"""summary.json records the model revision fetched and the checkpoint step evaluated."""

from __future__ import annotations

import json

from gsm8k_eval.evaluation.record import model_revision


def test_model_revision_is_the_resolved_hub_commit_else_the_configured_one(tmp_path):
    record = {"source": "hf:google/gemma-3-1b-it", "revision": "main", "inputs": {}}
    (tmp_path / "source.json").write_text(json.dumps(record))
    assert model_revision(tmp_path) == "main"
    record["inputs"] = {"resolved_revision": "a" * 40}
    (tmp_path / "source.json").write_text(json.dumps(record))
    assert model_revision(tmp_path) == "a" * 40
    assert model_revision(tmp_path / "missing") is None
    assert model_revision(None) is None
