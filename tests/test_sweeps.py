"""Checkpoint sweeps: one config entry with steps/every expands into one checkpoint per step,
listed from a local folder or a bucket (the GCS emulator) at planning time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from pipeline_helpers import REPO, tiny_config, write_config

from gsm8k_eval.checkpoints.listing import list_steps
from gsm8k_eval.config import ConfigError, load_config
from gsm8k_eval.sweeps import SweepError, expand, member_name, member_step
from gsm8k_eval.targets import list_steps as listed

AVAILABLE = (5, 10, 20, 100)


def _load(config: dict):
    """load_config with the Snakefile's step listing (local folders and gs://); LoRA checkpoints
    need an explicit lora.alpha."""
    return load_config({"lora": {"alpha": 16.0}, **config}, listed)


def _lister(source: str) -> tuple[int, ...]:
    return AVAILABLE


def _names(entry: dict) -> list[str]:
    return [e["name"] for e in expand([{"source": "gs://b/run/actor", **entry}], _lister)]


@pytest.fixture(autouse=True)
def _fresh_listings():
    list_steps.cache_clear()
    yield
    list_steps.cache_clear()


def test_steps_all_list_and_every_expand_sorted_by_step():
    assert _names({"name": "r", "steps": "all"}) == [f"r-step{s}" for s in AVAILABLE]
    assert _names({"name": "r", "steps": [100, 5, 20]}) == ["r-step5", "r-step20", "r-step100"]
    assert _names({"name": "r", "every": 10}) == ["r-step10", "r-step20", "r-step100"]
    assert _names({"name": "r", "every": 10, "to": 50}) == ["r-step10", "r-step20"]
    assert _names({"name": "r", "steps": "all", "from": 10, "to": 20}) == ["r-step10", "r-step20"]


def test_members_carry_step_source_and_sweep():
    entries = expand([{"name": "r", "source": "/x", "every": 50}], _lister)
    assert entries == [{"name": "r-step100", "source": "/x", "step": 100, "sweep": "r"}]
    assert member_name("r", 7) == "r-step7"
    assert (member_step("r", "r-step7"), member_step("r", "rr-step7")) == (7, None)


def test_listing_sweeps_need_a_lister():
    with pytest.raises(SweepError, match="need the source's step listing"):
        expand([{"name": "r", "source": "/x", "steps": "all"}])


def test_a_step_list_does_not_list_the_source():
    def refuse(source: str) -> tuple[int, ...]:
        raise AssertionError("listed")

    assert [e["step"] for e in expand([{"name": "r", "source": "/x", "steps": [3]}], refuse)] == [3]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"every": 7}, "no multiples of every: 7"),
        ({"steps": "all", "from": 200}, "no steps between from: 200"),
        ({"steps": [5], "step": 5}, "step cannot be combined"),
        ({"steps": [5], "every": 5}, "not both"),
        ({"steps": [5], "from": 1}, "not a list"),
        ({"every": 5, "from": 9, "to": 1}, "from (9) is after to (1)"),
        ({"every": 5, "source": "base"}, "not base"),
        ({"from": 5}, "from/to need steps: all or every"),
    ],
)
def test_sweep_errors_name_the_entry_and_key(entry, message):
    with pytest.raises(SweepError, match=r"checkpoints\[r\]") as error:
        expand([{"name": "r", "source": "/x", **entry}], _lister)
    assert message in str(error.value)


def test_no_steps_found_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no step folders"):
        _load({"checkpoints": [{"name": "r", "source": str(tmp_path), "steps": "all"}]})


def test_unknown_sweep_key_is_a_schema_error(tmp_path):
    with pytest.raises(ConfigError, match="evry"):
        _load({"checkpoints": [{"name": "r", "source": str(tmp_path), "evry": 5}]})


def test_local_folder_listing_keeps_integer_folders_sorted_numerically(tmp_path):
    for name in ("100", "9", "10", "tmp", "latest"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file named like a step is still listed by name")
    assert list_steps(str(tmp_path)) == (7, 9, 10, 100)
    cfg = _load({"checkpoints": [{"name": "r", "source": str(tmp_path), "every": 10}]})
    assert [(c.name, c.step, c.sweep) for c in cfg.checkpoints] == [
        ("r-step10", 10, "r"),
        ("r-step100", 100, "r"),
    ]


def test_a_single_step_folder_cannot_be_swept(tmp_path):
    (tmp_path / "model_params").mkdir()
    with pytest.raises(ConfigError, match="single step folder"):
        _load({"checkpoints": [{"name": "r", "source": str(tmp_path), "steps": "all"}]})


def _fake_run_on_gcs(emulator, bucket: str, steps: list[int]) -> str:
    url = f"gs://{bucket}/tunix/run/actor"
    for step in steps:
        emulator.put_bytes(f"{url}/{step}/_CHECKPOINT_METADATA", b"{}")
        emulator.put_bytes(f"{url}/{step}/model_params/_METADATA", b"{}")
    emulator.put_bytes(f"{url}/README", b"not a step")
    return url


def test_bucket_listing_on_the_gcs_emulator(gcs_emulator, gcs_bucket):
    url = _fake_run_on_gcs(gcs_emulator, gcs_bucket, [30, 4, 200])
    assert list_steps(url) == (4, 30, 200)
    cfg = _load(
        {"checkpoints": [{"name": "base"}, {"name": "g", "source": url, "to": 100, "steps": "all"}]}
    )
    assert [c.name for c in cfg.checkpoints] == ["base", "g-step4", "g-step30"]


def test_missing_bucket_is_a_config_error(gcs_emulator):
    with pytest.raises(ConfigError, match="does not exist"):
        _load({"checkpoints": [{"name": "g", "source": "gs://no-such-bucket-x/a", "steps": "all"}]})


# `snakemake <argv[2:]>` recording every listing of a checkpoint folder (one line each) in
# argv[1]: the filesystem the step listing opens is wrapped to count its `ls` calls.
_COUNTING_SNAKEMAKE = """
import atexit, sys
from gsm8k_eval.checkpoints import listing
calls, opened = [], listing.filesystem
class Counting:
    def __init__(self, fs):
        self._fs = fs
    def ls(self, path, *args, **kwargs):
        calls.append(str(path))
        return self._fs.ls(path, *args, **kwargs)
    def __getattr__(self, name):
        return getattr(self._fs, name)
listing.filesystem = lambda *args, **kwargs: Counting(opened(*args, **kwargs))
atexit.register(lambda: open(sys.argv[1], "w").write("".join(c + "\\n" for c in calls)))
from snakemake.cli import main
main(sys.argv[2:])
"""


def test_dry_run_plans_one_fetch_and_evaluate_per_step_with_one_listing(
    gcs_emulator, gcs_bucket, tmp_path, gsm8k_dir
):
    url = _fake_run_on_gcs(gcs_emulator, gcs_bucket, [1, 2, 3])
    config = tiny_config(
        checkpoints=[{"name": "base"}, {"name": "g", "source": url, "steps": "all"}],
        batch_sizes=[2],
        lora={"alpha": 16.0},
    )
    path = write_config(tmp_path, config)
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    listings = tmp_path / "listings.txt"
    command = [sys.executable, "-c", _COUNTING_SNAKEMAKE, str(listings)]
    command += ["-s", str(REPO / "Snakefile"), "-n", "--directory", str(tmp_path)]
    command += ["--configfile", str(path), "--cores", "1"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = [line for line in result.stdout.splitlines() if line.startswith("    output: ")]
    for step in (1, 2, 3):
        assert any(f"checkpoints/g-step{step}" in line for line in planned), step
        assert any(f"eval/g-step{step}/fixed/bs2/rollouts.jsonl" in line for line in planned), step
    # planning lists the run's folder once (cached per parse), however many rules ask
    assert len(listings.read_text().splitlines()) == 1, listings.read_text()
    assert yaml.safe_load(path.read_text())["checkpoints"][1] == {
        "name": "g",
        "source": url,
        "steps": "all",
    }
