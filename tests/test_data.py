"""Dataset stage (gsm8k_eval.data): canonical jsonl, manifest, checksums, loading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shared_data import require_gsm8k

from gsm8k_eval.data import (
    ChecksumMismatchError,
    DatasetError,
    Example,
    canonical_jsonl,
    download_dataset,
    load_examples,
)

SHARED_TEST_SHA256 = "752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac"
REVISION = "0123456789abcdef0123456789abcdef01234567"

ROWS = [
    {"question": "Janet’s ducks lay 16 eggs. ünïcode?", "answer": "16 - 3 = 13\n#### 13"},
    {"question": "Two?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2", "extra": "ignored"},
    {"question": "Big?", "answer": "#### 1,000"},
]


def _expected_bytes(rows: list[dict]) -> bytes:
    """The canonical form, written independently of the module under test."""
    text = "".join(
        json.dumps({"question": r["question"], "answer": r["answer"]}, ensure_ascii=False) + "\n"
        for r in rows
    )
    return text.encode("utf-8")


@pytest.fixture
def jsonl_source(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "test.jsonl"
    path.parent.mkdir()
    # ensure_ascii=True and a reversed key order: the canonical form must not depend on either
    lines = [json.dumps(dict(reversed(list(r.items())))) for r in ROWS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _download(source: str | Path, out_dir: Path, **kwargs) -> tuple[Path, Path]:
    out, manifest = out_dir / "test.jsonl", out_dir / "manifest.json"
    kwargs.setdefault("revision", None)
    kwargs.setdefault("expected_sha256", None)
    download_dataset(str(source), out, manifest, **kwargs)
    return out, manifest


# --------------------------------------------------------------------------- local sources


def test_jsonl_source_writes_canonical_jsonl_and_manifest(
    jsonl_source: Path, tmp_path: Path
) -> None:
    out, manifest_path = _download(jsonl_source, tmp_path / "out")
    data = out.read_bytes()
    assert data == _expected_bytes(ROWS)
    assert "ünïcode".encode() in data and b"\r" not in data
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    assert manifest["rows"] == 3
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["source_sha256"] == hashlib.sha256(jsonl_source.read_bytes()).hexdigest()
    assert manifest["source"] == str(jsonl_source)
    assert manifest["split"] == "test"
    assert manifest["kind"] == "local" and manifest["revision"] is None
    assert sorted(p.name for p in out.parent.iterdir()) == ["manifest.json", "test.jsonl"]


def test_parquet_source_gives_the_same_bytes(jsonl_source: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "src" / "test.parquet"
    rows = [json.loads(line) for line in jsonl_source.read_text(encoding="utf-8").splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    out_json, _ = _download(jsonl_source, tmp_path / "a")
    out_parquet, manifest = _download(parquet, tmp_path / "b")
    assert out_parquet.read_bytes() == out_json.read_bytes()
    assert (
        json.loads(manifest.read_text())["source_sha256"]
        == hashlib.sha256(parquet.read_bytes()).hexdigest()
    )


def test_rerun_is_byte_identical(jsonl_source: Path, tmp_path: Path) -> None:
    out, manifest = _download(jsonl_source, tmp_path / "out")
    first = (out.read_bytes(), manifest.read_bytes())
    _download(jsonl_source, tmp_path / "out")
    assert (out.read_bytes(), manifest.read_bytes()) == first


def test_expected_sha256_match_and_mismatch(jsonl_source: Path, tmp_path: Path) -> None:
    good = hashlib.sha256(_expected_bytes(ROWS)).hexdigest()
    out, _ = _download(jsonl_source, tmp_path / "ok", expected_sha256=good.upper())
    assert out.exists()
    with pytest.raises(ChecksumMismatchError, match=good):
        _download(jsonl_source, tmp_path / "bad", expected_sha256="0" * 64)
    assert not (tmp_path / "bad").exists()  # nothing written, not even the folder


def test_mismatch_keeps_a_previous_good_output(jsonl_source: Path, tmp_path: Path) -> None:
    out, manifest = _download(jsonl_source, tmp_path / "out")
    before = out.read_bytes(), manifest.read_bytes()
    with pytest.raises(ChecksumMismatchError):
        _download(jsonl_source, tmp_path / "out", expected_sha256="f" * 64)
    assert (out.read_bytes(), manifest.read_bytes()) == before


def test_local_source_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        _download(tmp_path / "missing.jsonl", tmp_path / "out")
    (tmp_path / "data.csv").write_text("question,answer\n")
    with pytest.raises(ValueError, match="unsupported dataset source"):
        _download(tmp_path / "data.csv", tmp_path / "out")
    no_answer = tmp_path / "no_answer.jsonl"
    no_answer.write_text('{"question": "q"}\n')
    with pytest.raises(DatasetError, match="answer"):
        _download(no_answer, tmp_path / "out")


def test_canonical_jsonl_rejects_non_string_fields() -> None:
    with pytest.raises(DatasetError, match="row 1: field 'answer'"):
        canonical_jsonl([{"question": "a", "answer": "b"}, {"question": "c", "answer": 3}])


def test_missing_shared_data_fails_instead_of_skipping(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("{}\n")
    with pytest.raises(pytest.fail.Exception, match=r"shared GSM8K data missing: .*test\.jsonl"):
        require_gsm8k(tmp_path)
    (tmp_path / "test.jsonl").write_text("{}\n")
    assert require_gsm8k(tmp_path) == tmp_path


def test_shared_gsm8k_test_split_checksum(tmp_path: Path, gsm8k_dir: Path) -> None:
    out, manifest = _download(
        gsm8k_dir / "test.jsonl", tmp_path, expected_sha256=SHARED_TEST_SHA256
    )
    assert json.loads(manifest.read_text())["rows"] == 1319
    assert len(load_examples(out)) == 1319


# --------------------------------------------------------------------------- hf: source


def _build_hub_cache(cache_root: Path, rows: list[dict], revision: str) -> None:
    """Lay out `datasets`' cache of openai/gsm8k (config main) at `revision`, as an online
    `load_dataset("openai/gsm8k", "main", revision=...)` leaves it, from a local parquet."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    parquet = cache_root.parent / "hub-standin.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    builder = Parquet(
        cache_dir=str(cache_root.parent / "builder-work"),
        dataset_name="gsm8k",
        config_name="main",
        data_files={"test": [str(parquet)]},
    )
    builder.download_and_prepare(
        output_dir=str(cache_root / "openai___gsm8k" / "main" / "0.0.0" / revision)
    )


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF Hub unreachable (offline mode) with a datasets cache holding openai/gsm8k@REVISION."""
    import datasets.config
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    _build_hub_cache(
        cache, [{"question": r["question"], "answer": r["answer"]} for r in ROWS], REVISION
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hf_source_loads_pinned_revision(offline_hub: Path, tmp_path: Path) -> None:
    out, manifest_path = _download("hf:openai/gsm8k", tmp_path / "out", revision=REVISION)
    assert out.read_bytes() == _expected_bytes(ROWS)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["kind"] == "hf"
    assert manifest["revision"] == REVISION
    assert manifest["config_name"] == "main"
    assert manifest["source_sha256"] is None
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_hf_source_refuses_a_cached_copy_of_another_revision(
    offline_hub: Path, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match="pinned revision"):
        _download("hf:openai/gsm8k", tmp_path / "out", revision="f" * 40)
    assert not (tmp_path / "out").exists()


def test_hf_source_needs_a_revision(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="revision"):
        _download("hf:openai/gsm8k", tmp_path / "out", revision=None)


# --------------------------------------------------------------------------- load_examples


def test_load_examples_and_limit(jsonl_source: Path) -> None:
    examples = load_examples(jsonl_source)
    assert examples[0] == Example(0, ROWS[0]["question"], ROWS[0]["answer"])
    assert [e.id for e in examples] == [0, 1, 2]
    assert load_examples(jsonl_source, limit=2) == examples[:2]
    assert load_examples(jsonl_source, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        load_examples(jsonl_source, limit=-1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "q", "answer": ', "invalid JSON"),
        ('["q", "a"]', "expected a JSON object"),
        ('{"question": "q"}', "missing field"),
        ('{"question": "q", "answer": 7}', "field 'answer' must be a string"),
    ],
)
def test_load_examples_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"bad\.jsonl:3: {message}"):
        load_examples(path)
