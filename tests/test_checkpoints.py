"""Checkpoints: tunix-written LoRA checkpoints, a real GCS emulator, corruption and resume."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gcs_fixtures import NO_CREDENTIALS_ENV

from gsm8k_eval import checkpoints as ck
from gsm8k_eval.checkpoints import (
    CheckpointAccessError,
    CheckpointIntegrityError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    LoraConfig,
    apply_checkpoint,
    fetch_checkpoint,
)
from gsm8k_eval.checkpoints import fetch as ck_fetch

TEST_LORA = LoraConfig(rank=4, alpha=8.0)  # deliberately not the defaults
STEPS = (1, 2)
RUN = "tunix/run-a/actor"


# --- a tiny Gemma3 with LoRA, saved by tunix's own CheckpointManager ---------------------------


def _base_model():
    from flax import nnx
    from tunix.models.gemma3 import model as gemma3

    config = gemma3.ModelConfig(
        num_layers=2,
        num_embed=64,
        embed_dim=32,
        hidden_dim=64,
        num_heads=2,
        head_dim=16,
        num_kv_heads=1,
        sliding_window_size=8,
        param_dtype=jnp.float32,
    )
    return gemma3.Gemma3(config, rngs=nnx.Rngs(0))


def _logits(model) -> np.ndarray:
    tokens = jnp.array([[2, 17, 5, 33, 9, 41, 3, 12], [2, 8, 8, 60, 1, 7, 30, 22]], jnp.int32)
    batch, length = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
    mask = jnp.broadcast_to(jnp.tril(jnp.ones((length, length), bool)), (batch, length, length))
    logits, _ = model(tokens, positions, None, mask)
    return np.asarray(logits)


def _randomise_lora(model, seed: int) -> None:
    """lora_b starts at zero (LoRA is a no-op); give every LoRA param random values."""
    from flax import nnx

    state = nnx.state(model, nnx.LoRAParam)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    rng = np.random.default_rng(seed)  # numpy: no per-shape XLA compiles on a busy CPU
    new = [jnp.asarray(0.2 * rng.standard_normal(x.shape), x.dtype) for x in leaves]
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))


@dataclass
class TunixRun:
    root: Path  # local <run>/actor written by tunix
    logits: dict[int, np.ndarray]  # in-memory LoRA model logits per step
    base_logits: np.ndarray


@pytest.fixture(scope="module")
def tunix_run(tmp_path_factory: pytest.TempPathFactory) -> TunixRun:
    """Steps 1 and 2 saved as tunix's PeftTrainer does (LoRA-only params + optimizer state)."""
    import optax
    import orbax.checkpoint as ocp
    import qwix
    from flax import nnx
    from tunix.sft.checkpoint_manager import CheckpointManager

    root = tmp_path_factory.mktemp("trainer") / "actor"
    base = _base_model()
    base_logits = _logits(base)
    provider = qwix.LoraProvider(
        module_path=TEST_LORA.module_path, rank=TEST_LORA.rank, alpha=TEST_LORA.alpha
    )
    model = qwix.apply_lora_to_model(base, provider, rngs=nnx.Rngs(1), **base.get_model_input())
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.LoRAParam)
    manager = CheckpointManager(str(root), ocp.CheckpointManagerOptions(max_to_keep=5))
    logits = {}
    for step in STEPS:
        _randomise_lora(model, seed=step)
        logits[step] = _logits(model)
        manager.save(
            step,
            model,
            optimizer,
            save_only_lora_params=True,
            force=True,
            custom_metadata={"global_step": step + 1, "role": "actor"},
        )
    manager.close()
    # An interrupted save (newer, incomplete) and an orbax temp folder: both must be skipped.
    (root / "3" / "model_params").mkdir(parents=True)
    (root / "3" / "model_params" / "partial").write_bytes(b"x" * 10)
    (root / "4.orbax-checkpoint-tmp-1").mkdir()
    (root / "4.orbax-checkpoint-tmp-1" / "junk").write_bytes(b"y")
    return TunixRun(root, logits, base_logits)


@pytest.fixture
def gcs_run(gcs_emulator, gcs_bucket: str, tunix_run: TunixRun) -> str:
    """The tunix run uploaded to the emulator; returns ``gs://bucket/tunix/run-a/actor``."""
    url = f"gs://{gcs_bucket}/{RUN}"
    gcs_emulator.upload_dir(tunix_run.root, url)
    return url


def _listing(gcs_emulator, url: str) -> dict[str, dict]:
    fs = gcs_emulator.filesystem()
    root = url.removeprefix("gs://")
    return {k[len(root) + 1 :]: v for k, v in fs.find(root, detail=True).items()}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --- LoraConfig --------------------------------------------------------------------------------


def test_lora_config_defaults_match_tunix_examples() -> None:
    lora = LoraConfig()
    assert (lora.rank, lora.alpha) == (16, 16.0)
    assert lora.module_path == (
        ".*q_einsum|.*kv_einsum|.*gate_proj|.*down_proj|.*up_proj|.*attn_vec_einsum"
    )
    with pytest.raises(ValueError, match="rank"):
        LoraConfig(rank=0)
    with pytest.raises(ValueError, match="alpha"):
        LoraConfig(alpha=0.0)


# --- round trip through the emulator ------------------------------------------------------------


def test_gcs_fetch_and_restore_is_bitwise_exact(
    gcs_emulator, gcs_run: str, tunix_run: TunixRun, tmp_path: Path
) -> None:
    out = fetch_checkpoint(gcs_run, tmp_path / "ckpt")
    manifest = json.loads((out / "manifest.json").read_text())
    listing = _listing(gcs_emulator, gcs_run)

    # Latest complete step (2): step 3 is incomplete, 4.orbax-checkpoint-tmp-1 is not a step.
    assert manifest["step"] == 2 and manifest["incomplete_steps_skipped"] == [3]
    assert manifest["available_steps"] == [1, 2, 3]
    assert manifest["bucket_path"] == f"{gcs_run}/2"
    assert manifest["custom_metadata"] == {"global_step": 3, "role": "actor"}
    wanted = {k for k in listing if k.startswith("2/") and not k.startswith("2/optimizer_state/")}
    assert any(k.startswith("2/optimizer_state/") for k in listing)
    assert {o["name"] for o in manifest["objects"]} == wanted
    assert _files(out) == wanted | {"manifest.json"}
    for obj in manifest["objects"]:
        remote = listing[obj["name"]]
        assert obj["size"] == remote["size"]
        assert obj["md5Hash"] == remote["md5Hash"] and obj["crc32c"] == remote["crc32c"]
        assert obj["generation"] == str(remote["generation"])
        remote_bytes = gcs_emulator.read_bytes(f"{gcs_run}/{obj['name']}")
        assert (out / obj["name"]).read_bytes() == remote_bytes
    assert manifest["fetch_stats"]["downloaded"] == len(wanted)
    assert not ck.staging_dir(out).exists()

    restored = apply_checkpoint(_base_model(), out, TEST_LORA)
    logits = _logits(restored)
    assert np.array_equal(logits, tunix_run.logits[2])  # bitwise
    assert not np.allclose(logits, tunix_run.base_logits, atol=1e-3)  # LoRA really applied


def test_explicit_step_restores_that_step(
    gcs_run: str, tunix_run: TunixRun, tmp_path: Path
) -> None:
    out = fetch_checkpoint(gcs_run, tmp_path / "ckpt", step=1)
    assert json.loads((out / "manifest.json").read_text())["step"] == 1
    logits = _logits(apply_checkpoint(_base_model(), out, TEST_LORA))
    assert np.array_equal(logits, tunix_run.logits[1])
    assert not np.allclose(logits, tunix_run.logits[2], atol=1e-3)


def test_wrong_alpha_restores_silently_but_changes_logits(
    gcs_run: str, tunix_run: TunixRun, tmp_path: Path
) -> None:
    out = fetch_checkpoint(gcs_run, tmp_path / "ckpt")
    wrong = LoraConfig(
        rank=TEST_LORA.rank, alpha=2 * TEST_LORA.alpha, module_path=TEST_LORA.module_path
    )
    logits = _logits(apply_checkpoint(_base_model(), out, wrong))
    assert np.abs(logits - tunix_run.logits[2]).max() > 1e-2


def test_rank_mismatch_lists_expected_and_found(tunix_run: TunixRun, tmp_path: Path) -> None:
    out = fetch_checkpoint(str(tunix_run.root), tmp_path / "ckpt")
    with pytest.raises(CheckpointMismatchError) as err:
        apply_checkpoint(_base_model(), out, LoraConfig())  # rank 16 vs the checkpoint's 4
    text = str(err.value)
    assert "rank=16" in text and "checkpoint lora_a ranks: [4]" in text
    assert "layers.0.attn.q_einsum.w_lora_a: expected (32, 16), found (32, 4)" in text


def test_module_path_mismatch_lists_missing_and_unexpected(
    tunix_run: TunixRun, tmp_path: Path
) -> None:
    out = fetch_checkpoint(str(tunix_run.root), tmp_path / "ckpt")
    lora = LoraConfig(rank=4, alpha=8.0, module_path=".*q_einsum|.*lm_head_nothing")
    with pytest.raises(CheckpointMismatchError, match=r"0 expected but missing, 20 unexpected"):
        apply_checkpoint(_base_model(), out, lora)


def test_local_and_file_url_sources(tunix_run: TunixRun, tmp_path: Path) -> None:
    a = fetch_checkpoint(str(tunix_run.root), tmp_path / "a")
    b = fetch_checkpoint(f"file://{tunix_run.root}/2", tmp_path / "b")
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["kind"] == mb["kind"] == "local" and ma["step"] == mb["step"] == 2
    assert [o["md5Hash"] for o in ma["objects"]] == [o["md5Hash"] for o in mb["objects"]]
    assert np.array_equal(
        _logits(apply_checkpoint(_base_model(), b, TEST_LORA)), tunix_run.logits[2]
    )


def test_base_is_a_manifest_only_and_leaves_the_model_untouched(tmp_path: Path) -> None:
    out = fetch_checkpoint("base", tmp_path / "base")
    assert _files(out) == {"manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lora"] is False and manifest["source"] == "base"
    model = object()
    assert apply_checkpoint(model, out, LoraConfig()) is model


# --- credentials: configured ones are used, none means anonymous (public buckets) --------------


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("gs:// access:")]


def test_public_bucket_is_read_anonymously_without_credentials(
    gcs_run: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not os.environ["GOOGLE_APPLICATION_CREDENTIALS"]  # the emulator env hides any
    caplog.set_level("INFO", logger="gsm8k_eval.checkpoints")
    out = fetch_checkpoint(gcs_run, tmp_path / "ckpt")
    assert json.loads((out / "manifest.json").read_text())["step"] == 2
    [line] = _access_lines(caplog)
    assert line.startswith("gs:// access: anonymous (no Google Cloud credentials configured")


class _JsonHandler(http.server.BaseHTTPRequestHandler):
    """A loopback HTTP endpoint that answers with JSON and logs nothing."""

    def reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serves ``handler`` on a free 127.0.0.1 port (yielded) until the block ends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class _TokenHandler(_JsonHandler):
    """An OAuth token endpoint: every refresh gets a fake access token."""

    requests: list[str]

    def do_POST(self) -> None:
        self.requests.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
        self.reply(200, {"access_token": "fake", "expires_in": 3600, "token_type": "Bearer"})


def _service_account_key(token_port: int) -> dict[str, str]:
    """A service-account key file whose token endpoint is the loopback ``_TokenHandler``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "1",
        "private_key": pem.decode(),
        "client_email": "reader@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"http://127.0.0.1:{token_port}/token",
    }


def test_configured_credentials_are_used(
    gcs_run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handler = type("Token", (_TokenHandler,), {"requests": []})
    caplog.set_level("INFO", logger="gsm8k_eval.checkpoints")
    with _serving(handler) as port:
        key = tmp_path / "key.json"
        key.write_text(json.dumps(_service_account_key(port)))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        out = fetch_checkpoint(gcs_run, tmp_path / "ckpt")
    assert json.loads((out / "manifest.json").read_text())["step"] == 2
    [line] = _access_lines(caplog)
    assert line == (
        "gs:// access: Google application default credentials "
        "(google.oauth2.service_account.Credentials)"
    )
    assert handler.requests and "grant_type=urn" in handler.requests[0]  # a token was fetched


# --- corruption --------------------------------------------------------------------------------


def _param_object(names) -> str:
    """First array-data file of step 2's model_params (an ocdbt data chunk)."""
    return sorted(n for n in names if n.startswith("2/model_params/") and "/d/" in n)[0]


def test_object_changed_on_server_after_listing_is_reported(
    gcs_emulator, gcs_run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = _param_object(_listing(gcs_emulator, gcs_run))
    real_list = ck_fetch._list_objects

    def list_then_overwrite(fs, src):
        objects = real_list(fs, src)
        gcs_emulator.put_bytes(f"{gcs_run}/{victim}", b"overwritten after listing")
        return objects

    monkeypatch.setattr(ck_fetch, "_list_objects", list_then_overwrite)
    with pytest.raises(CheckpointIntegrityError) as err:
        fetch_checkpoint(gcs_run, tmp_path / "ckpt")
    assert victim in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "ckpt").exists()


def test_corrupted_download_is_refetched(
    gcs_run: str, tunix_run: TunixRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_download = ck_fetch._download_object
    corrupted = []

    def flip_first_param_byte(fs, obj, dest, callback):
        real_download(fs, obj, dest, callback)
        if "/d/" in obj.name and not corrupted:
            data = bytearray(dest.read_bytes())
            data[len(data) // 2] ^= 0xFF
            dest.write_bytes(bytes(data))
            corrupted.append(obj.name)

    monkeypatch.setattr(ck_fetch, "_download_object", flip_first_param_byte)
    out = fetch_checkpoint(gcs_run, tmp_path / "ckpt")
    stats = json.loads((out / "manifest.json").read_text())["fetch_stats"]
    assert corrupted and stats["retried"] == 1
    assert np.array_equal(
        _logits(apply_checkpoint(_base_model(), out, TEST_LORA)), tunix_run.logits[2]
    )


def test_persistent_checksum_mismatch_is_reported(
    gcs_run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_list = ck_fetch._list_objects
    calls = []

    def wrong_md5(fs, src):
        objects = real_list(fs, src)
        i = next(i for i, o in enumerate(objects) if o.name == "2/model_params/_METADATA")
        objects[i] = ck.RemoteObject(
            objects[i].name,
            objects[i].path,
            objects[i].size,
            "AAAAAAAAAAAAAAAAAAAAAA==",
            objects[i].crc32c,
            objects[i].generation,
        )
        return objects

    real_download = ck_fetch._download_object
    monkeypatch.setattr(ck_fetch, "_list_objects", wrong_md5)
    monkeypatch.setattr(
        ck_fetch, "_download_object", lambda *a: calls.append(a[1].name) or real_download(*a)
    )
    with pytest.raises(CheckpointIntegrityError, match="failed verification 3 times") as err:
        fetch_checkpoint(gcs_run, tmp_path / "ckpt")
    assert "md5" in str(err.value)
    assert calls.count("2/model_params/_METADATA") == ck.MAX_ATTEMPTS
    assert not (tmp_path / "ckpt").exists()
    staged = ck.staging_dir(tmp_path / "ckpt")
    assert not list(staged.rglob("*.part")) and not (staged / "2/model_params/_METADATA").exists()


def test_corrupted_local_copy_is_detected(
    gcs_run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = fetch_checkpoint(gcs_run, tmp_path / "ckpt")
    victim = _param_object(_files(out))
    path = out / victim
    path.write_bytes(path.read_bytes()[:-5])  # truncated after the fetch
    with pytest.raises(CheckpointIntegrityError, match="no longer matches its manifest"):
        apply_checkpoint(_base_model(), out, TEST_LORA)

    downloads = []
    real_download = ck_fetch._download_object
    monkeypatch.setattr(
        ck_fetch, "_download_object", lambda *a: downloads.append(a[1].name) or real_download(*a)
    )
    fetch_checkpoint(gcs_run, tmp_path / "ckpt")  # rerun: only the bad file is fetched again
    assert downloads == [victim]
    ck.verify_checkpoint_dir(out, json.loads((out / "manifest.json").read_text()))


# --- interruption ------------------------------------------------------------------------------

_KILLED_FETCH = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gsm8k_eval.checkpoints import fetch as ck

    source, out, marker, after = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    real = ck._download_object
    done = []

    def download(fs, obj, dest, callback):
        if len(done) == after:  # mid-object: leave a partial file, then hang until killed
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(b"partial")
            marker.write_text(obj.name)
            time.sleep(600)
        real(fs, obj, dest, callback)
        done.append(obj.name)

    ck._download_object = download
    ck.fetch_checkpoint(source, out)
    """
)


def test_killed_fetch_resumes_without_refetching_verified_files(
    gcs_run: str, tunix_run: TunixRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, marker, after = tmp_path / "ckpt", tmp_path / "marker", 5
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_FETCH, gcs_run, str(out), str(marker), str(after)],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "subprocess never reached the kill point"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    staging = ck.staging_dir(out)
    staged = {f for f in _files(staging) if not f.endswith(".part")}
    assert not out.exists() and len(staged) == after
    assert (staging / f"{marker.read_text()}.part").read_bytes() == b"partial"
    truncated = sorted(staged)[0]  # a verified staged file damaged afterwards
    (staging / truncated).write_bytes((staging / truncated).read_bytes()[:1])

    downloads = []
    real_download = ck_fetch._download_object
    monkeypatch.setattr(
        ck_fetch, "_download_object", lambda *a: downloads.append(a[1].name) or real_download(*a)
    )
    fetch_checkpoint(gcs_run, out)
    manifest = json.loads((out / "manifest.json").read_text())
    total = len(manifest["objects"])
    assert set(downloads) == ({o["name"] for o in manifest["objects"]} - staged) | {truncated}
    assert len(downloads) == total - after + 1
    assert manifest["fetch_stats"]["reused"] == after - 1
    assert manifest["fetch_stats"]["downloaded"] == total - after + 1
    assert not staging.exists() and not list(out.rglob("*.part"))
    assert np.array_equal(
        _logits(apply_checkpoint(_base_model(), out, TEST_LORA)), tunix_run.logits[2]
    )


# --- errors ------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_missing_bucket_path_and_step_are_one_line_errors(
    gcs_run: str, gcs_bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(CheckpointNotFoundError) as err:
        fetch_checkpoint("gs://no-such-bucket-xyz/tunix/run/actor", tmp_path / "a")
    assert "gs://no-such-bucket-xyz does not exist" in _one_line(err.value)
    with pytest.raises(CheckpointNotFoundError) as err:
        fetch_checkpoint(f"gs://{gcs_bucket}/tunix/missing/actor", tmp_path / "b")
    assert f"no objects under gs://{gcs_bucket}/tunix/missing/actor" in _one_line(err.value)
    with pytest.raises(CheckpointNotFoundError) as err:
        fetch_checkpoint(gcs_run, tmp_path / "c", step=7)
    assert "step 7" in _one_line(err.value) and "[1, 2]" in str(err.value)
    with pytest.raises(CheckpointNotFoundError, match="incomplete"):
        fetch_checkpoint(gcs_run, tmp_path / "d", step=3)
    with pytest.raises(CheckpointNotFoundError, match="unsupported"):
        fetch_checkpoint("s3://bucket/actor", tmp_path / "e")
    assert not any((tmp_path / n).exists() for n in "abcde")


class _DenyHandler(_JsonHandler):
    status = 403

    def do_GET(self) -> None:
        message = "caller does not have storage.objects.list access"
        self.reply(self.status, {"error": {"code": self.status, "message": message}})


@pytest.fixture(params=[401, 403])
def denying_server(request: pytest.FixtureRequest) -> Iterator[str]:
    with _serving(type("Deny", (_DenyHandler,), {"status": request.param})) as port:
        yield f"http://127.0.0.1:{port}"


def test_denied_access_is_a_one_line_error(
    denying_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in NO_CREDENTIALS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", denying_server)
    with pytest.raises(CheckpointAccessError) as err:
        fetch_checkpoint("gs://private-bucket/tunix/run/actor", tmp_path / "ckpt")
    text = _one_line(err.value)
    assert "gs://private-bucket/tunix/run/actor" in text
    assert "GOOGLE_APPLICATION_CREDENTIALS" in text


def test_missing_credentials_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    for var in ("GCE_METADATA_HOST", "GCE_METADATA_IP"):  # never probe a real metadata server
        monkeypatch.setenv(var, "127.0.0.1:9")
    with pytest.raises(CheckpointAccessError) as err:
        fetch_checkpoint("gs://some-bucket/tunix/run/actor", tmp_path / "ckpt")
    assert "missing-key.json" in _one_line(err.value)
    assert "gcloud auth application-default login" in str(err.value)
