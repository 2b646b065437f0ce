"""Cluster execution: the profiles in profiles/ and the SLURM executor, end to end.

* Static: every profile parses, asks for the GPU only for `evaluate`, under the resource name
  its executor understands.
* Local GPU profile: two `evaluate` jobs never overlap (they do without the profile).
* SLURM (`@pytest.mark.cluster`): a throw-away one-node cluster on localhost
  (tests/cluster/start_slurm.sh, two fake GPUs) runs `snakemake --profile profiles/slurm`
  on the smoke workflow tests/cluster/Snakefile and on the real pipeline (tests/configs/tiny.yaml):
  the GPU job is a SLURM job with a GPU (SLURM_JOB_ID, CUDA_VISIBLE_DEVICES), the local rules
  are not, outputs equal a local run's, a failing job fails the workflow instead of hanging it,
  and a retried job resumes from its shard.
* Cloud (`@pytest.mark.cluster`): the googlebatch and kubernetes profiles plan (`-n`) in a
  separate venv (tests/cluster/make_cloud_venv.sh) against a local GCS emulator.

Every snakemake run is wrapped in `timeout -s INT -k 15`: on SIGINT snakemake cancels its SLURM
jobs; a run that needs the kill is a hang and fails the test. Runs that do not depend on each
other (separate folders) are started side by side: most of a SLURM run is waiting for status
polls.
"""

from __future__ import annotations

import ensurepip
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_DIR = REPO / "tests" / "cluster"
SMOKE_SNAKEFILE = CLUSTER_DIR / "Snakefile"
PROFILES = REPO / "profiles"
BIN = Path(sys.executable).parent
SLURM_STATE = Path(os.environ.get("GSM8K_SLURM_STATE", "/tmp/gsm8k-slurm-pytest"))
# Poll SLURM soon after submitting (the profile's 40 s suits real clusters, not a test).
FAST_POLL = ("--slurm-init-seconds-before-status-checks", "5")
RUN_TIMEOUT = 480  # seconds for one snakemake run on the test cluster
HANG_CODES = (124, 137)  # timeout(1): SIGINT did not end it in time / SIGKILL
START_CANNOT_INSTALL = 77  # tests/cluster/start_slurm.sh: SLURM missing and apt-get failed
# the wheels venv installs pip from (a local "index" holding pip and nothing else)
BUNDLED_WHEELS = Path(ensurepip.__file__).parent / "_bundled"


# --------------------------------------------------------------------------------- helpers


def load_profile(name: str) -> dict:
    config = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
    assert isinstance(config, dict), f"profiles/{name}/config.yaml is not a mapping"
    return config


def planned_jobs(output: str) -> dict[str, list[dict]]:
    """Parse `snakemake -n` output: rule name -> list of {local, resources} per job."""
    jobs: dict[str, list[dict]] = {}
    current = None
    for line in output.splitlines():
        match = re.match(r"^(local)?rule (\w+):$", line)
        if match:
            current = {"local": bool(match.group(1)), "resources": {}}
            jobs.setdefault(match.group(2), []).append(current)
            continue
        match = re.match(r"^\s+resources: (.*)$", line)
        if match and current is not None:
            for item in match.group(1).split(", "):
                key, _, value = item.partition("=")
                current["resources"][key] = value
            current = None
    return jobs


def venv_env(**extra: str) -> dict[str, str]:
    """os.environ as in a shell with this interpreter's venv activated (jobs inherit it)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(BIN.parent)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update(extra)
    return env


def run_snakemake(
    args: list[str], env: dict[str, str], timeout: int = RUN_TIMEOUT, snakemake: str | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    command = [
        "timeout", "-s", "INT", "-k", "15", str(timeout),
        *([snakemake] if snakemake else [sys.executable, "-m", "snakemake"]),
        *args,
    ]  # fmt: skip
    start = time.monotonic()
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout + 60
    )
    return result, time.monotonic() - start


def describe(result: subprocess.CompletedProcess[str], workdir: Path | None = None) -> str:
    text = f"rc={result.returncode}\n--- stdout\n{result.stdout[-5000:]}\n"
    text += f"--- stderr\n{result.stderr[-8000:]}\n"
    if workdir is not None:
        for log in sorted(workdir.glob(".snakemake/slurm_logs/**/*.log"))[-4:]:
            text += f"--- {log}\n{log.read_text()[-3000:]}\n"
        for log in sorted(workdir.glob("results/logs/**/*.log")):
            text += f"--- {log}\n{log.read_text()[-2000:]}\n"
    return text


def assert_no_hang(result: subprocess.CompletedProcess[str], workdir: Path) -> None:
    assert result.returncode not in HANG_CODES, "snakemake hung (timeout):\n" + describe(
        result, workdir
    )


def squeue_jobs(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T"],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return dict(line.split("|", 1) for line in out.split())


def scontrol_job(job_id: str, env: dict[str, str]) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", job_id],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip


def slurm_log_rules(workdir: Path) -> set[str]:
    """Rules that had SLURM jobs (the plugin keeps one log folder per rule)."""
    return {p.name for p in (workdir / ".snakemake" / "slurm_logs").iterdir()}


def require_slurm_plugin() -> None:
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail(
            "snakemake-executor-plugin-slurm is not installed in this environment: "
            "pip install snakemake-executor-plugin-slurm==2.8.0 (a pinned project dependency)"
        )


# ------------------------------------------------------------------------ static profile checks


def test_slurm_profile_gpu_only_for_the_gpu_rules():
    profile = load_profile("slurm")
    assert profile["executor"] == "slurm"
    gpu_rules = ("evaluate", "evaluate_spot_check", "reference")  # the reference: hours on a GPU
    for rule in gpu_rules:
        assert profile["set-resources"][rule]["gpu"] == 1, rule
    for rule, resources in profile["set-resources"].items():
        if rule not in gpu_rules:
            assert "gpu" not in resources, rule
    assert not {"gpu", "gpus", "gres"} & set(profile.get("default-resources", {}))
    assert profile["retries"] >= 1, "preempted evaluate jobs must be resubmitted"
    # No slurmdbd => sacct never reports a finished job and the run hangs; squeue does.
    assert profile["slurm-status-command"] == "squeue"
    assert isinstance(profile["cores"], int), "local rules need a core count"


def test_cloud_profiles_use_their_executors_gpu_names():
    batch = load_profile("googlebatch")
    assert batch["executor"] == "googlebatch"
    evaluate = batch["set-resources"]["evaluate"]
    assert evaluate["nvidia_gpu"] and evaluate["googlebatch_machine_type"]
    assert "gpu" not in evaluate  # googlebatch ignores `gpu`
    assert batch["default-storage-provider"] == "gcs"

    kube = load_profile("kubernetes")
    assert kube["executor"] == "kubernetes"
    evaluate = kube["set-resources"]["evaluate"]
    assert evaluate["gpu"] == 1 and evaluate["gpu_manufacturer"] == "nvidia"
    assert "nvidia_gpu" not in evaluate
    assert kube["default-storage-provider"] == "gcs"
    for profile in (batch, kube):
        resources = profile["set-resources"]
        assert set(resources) == {"evaluate", "evaluate_spot_check", "reference"}
        assert resources["evaluate_spot_check"] == resources["evaluate"]
        assert resources["reference"] == resources["evaluate"]  # transformers on the GPU


def test_local_gpu_profile():
    profile = load_profile("local-gpu")
    assert "executor" not in profile
    assert profile["cores"] == "all"
    assert "gpu=1" in profile["resources"]
    # Relies on rule evaluate declaring `gpu`; a set-resources block here would replace a
    # cluster profile's whole set-resources block if both were given.
    assert "set-resources" not in profile


@pytest.mark.parametrize("workflow", ["smoke", "pipeline"])
def test_slurm_profile_plans(workflow, tmp_path):
    """`-n` with the real plugin: the profile's keys are valid, only evaluate gets the GPU.

    (A dry run prints local rules as `rule`, so local-ness is checked by the SLURM runs.)
    """
    require_slurm_plugin()
    args = ["-s", str(SMOKE_SNAKEFILE)]
    if workflow == "pipeline":
        helpers = _pipeline_inputs()
        configfile = helpers.write_config(tmp_path, helpers.tiny_config())
        args = ["-s", str(REPO / "Snakefile"), "--configfile", str(configfile)]
    result, _ = run_snakemake(
        [*args, "--profile", "profiles/slurm", "--directory", str(tmp_path), "-n"],
        venv_env(), timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    jobs = planned_jobs(result.stdout)
    assert len(jobs["evaluate"]) == 2
    for job in jobs["evaluate"]:
        assert job["resources"]["gpu"] == "1", job
    for rule, rule_jobs in jobs.items():
        if rule != "evaluate":
            assert all("gpu" not in job["resources"] for job in rule_jobs), (rule, rule_jobs)


def test_local_gpu_profile_serialises_evaluate(tmp_path):
    """With profiles/local-gpu two evaluations never share the GPU; without it they overlap."""

    def intervals(workdir: Path, *args: str) -> list[tuple[float, float]]:
        result, _ = run_snakemake(
            ["-s", str(SMOKE_SNAKEFILE), "--directory", str(workdir), *args,
             "--config", "sleep=2", "batch_sizes=[1,2,4]"],
            venv_env(), timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, describe(result, workdir)
        report = json.loads((workdir / "results" / "report.json").read_text())
        return sorted((e["start"], e["end"]) for e in report["evaluate"].values())

    def overlaps(spans: list[tuple[float, float]]) -> bool:
        return any(b_start < a_end for (_, a_end), (b_start, _) in itertools.pairwise(spans))

    # Both runs at once (separate folders; each mostly sleeps).
    with ThreadPoolExecutor(2) as pool:
        gpu = pool.submit(intervals, tmp_path / "gpu", "--profile", "profiles/local-gpu")
        free = pool.submit(intervals, tmp_path / "free", "--cores", "3")
    assert not overlaps(gpu.result())
    # Control: the same jobs do run concurrently when nothing limits the GPU.
    assert overlaps(free.result())


# ------------------------------------------------------------------------------- SLURM cluster


def start_outcome(returncode: int, output: str) -> str:
    """Outcome of a start_slurm.sh run: "ok", "skip" or "fail". Skip only on its status 77 with
    its marker line (SLURM missing and apt-get could not install it); any other failure --
    slurmctld or slurmd not starting, a node that never gets ready -- fails."""
    if returncode == 0:
        return "ok"
    if returncode == START_CANNOT_INSTALL and "[start_slurm] CANNOT INSTALL:" in output:
        return "skip"
    return "fail"


def test_slurm_start_failures_are_not_skipped():
    """Regression: an apt-get install followed by a slurmctld failure used to be skipped."""
    installed_then_failed = (
        "[start_slurm] installing slurmctld slurmd slurm-client munge (apt-get)\n"
        "[start_slurm] ERROR: slurmctld failed; see /tmp/s/slurmctld.log\n"
    )
    assert start_outcome(1, installed_then_failed) == "fail"
    assert start_outcome(77, "slurmd: fatal: ...") == "fail"  # 77 without the marker
    assert start_outcome(77, "[start_slurm] CANNOT INSTALL: apt-get update failed") == "skip"
    assert start_outcome(0, "SLURM READY") == "ok"


def _fake_bin(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/bash\n{script}\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("apt_get", "status", "message"),
    [
        (None, 77, "CANNOT INSTALL: slurm/munge missing and no apt-get"),
        ("exit 100", 77, "CANNOT INSTALL: apt-get update failed"),
        ('[[ "$1" == update ]] || exit 100', 77, "CANNOT INSTALL: apt-get install"),
        ("exit 0", 1, "ERROR: apt-get installed SLURM/munge but slurmctld is missing"),
    ],
)
def test_start_slurm_exits_77_only_when_apt_get_cannot_install(apt_get, status, message, tmp_path):
    """start_slurm.sh with a PATH of stand-ins (root `id`, no SLURM, a scripted apt-get): it
    stops before touching the system; 77 only for apt-get's own failures."""
    fake = tmp_path / "bin"
    fake.mkdir()
    _fake_bin(fake, "id", "echo 0")
    if apt_get is not None:
        _fake_bin(fake, "apt-get", apt_get)
    result = subprocess.run(
        ["/bin/bash", str(CLUSTER_DIR / "start_slurm.sh"), str(tmp_path / "state")],
        env={"PATH": str(fake)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == status, result.stderr
    assert f"[start_slurm] {message}" in result.stderr
    assert start_outcome(result.returncode, result.stderr) == ("skip" if status == 77 else "fail")
    assert not (tmp_path / "state").exists()


@pytest.fixture(scope="module")
def slurm_env():
    """Start the one-node test cluster; environment for clients; stop the daemons by PID."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (slurmd)")
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(b)]
    if missing and not shutil.which("apt-get"):
        pytest.skip(f"SLURM not installed ({missing}) and no apt-get to install it")
    require_slurm_plugin()
    # Leftovers of an interrupted session on the same state dir (stopped by their PID files).
    subprocess.run(
        ["bash", str(CLUSTER_DIR / "stop_slurm.sh"), str(SLURM_STATE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    start = subprocess.run(
        ["bash", str(CLUSTER_DIR / "start_slurm.sh"), str(SLURM_STATE)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    text = start.stdout + start.stderr
    outcome = start_outcome(start.returncode, text)
    if outcome == "skip":
        pytest.skip(f"cannot apt-get install SLURM/munge:\n{text[-2000:]}")
    if outcome == "fail":
        pytest.fail(f"start_slurm.sh failed (rc={start.returncode}):\n{text[-4000:]}")
    assert "SLURM READY" in start.stdout, start.stdout + start.stderr
    env = venv_env(SLURM_CONF=str(SLURM_STATE / "slurm.conf"))
    try:
        yield env
    finally:
        stop = subprocess.run(
            ["bash", str(CLUSTER_DIR / "stop_slurm.sh"), str(SLURM_STATE)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert stop.returncode == 0, stop.stdout + stop.stderr


def slurm_run(workdir: Path, env: dict[str, str], *args: str, snakefile: Path = SMOKE_SNAKEFILE):
    return run_snakemake(
        ["-s", str(snakefile), "--profile", "profiles/slurm", "--directory", str(workdir),
         *FAST_POLL, *args],
        env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def smoke_runs(slurm_env, tmp_path_factory):
    """The smoke workflow's runs, started side by side (each mostly waits for SLURM's status
    polls, so together they take about as long as the slowest alone): on SLURM as is, with a
    failing job, with a job that dies once (retried), and locally. name -> (result, seconds,
    workdir); each test below checks its own."""
    root = tmp_path_factory.mktemp("slurm-smoke")
    smoke_local = ["-s", str(SMOKE_SNAKEFILE), "--cores", "2", "--directory", str(root / "local")]
    runs = {
        "slurm": lambda: slurm_run(root / "slurm", slurm_env),
        "local": lambda: run_snakemake(smoke_local, venv_env()),
        "fail": lambda: slurm_run(
            root / "fail", slurm_env, "--retries", "0", "--config", "fail=true", "batch_sizes=[1]"
        ),
        "retry": lambda: slurm_run(
            root / "retry", slurm_env, "--config", "fail_first=true", "batch_sizes=[1]"
        ),
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(run) for name, run in runs.items()}
    return {name: (*future.result(), root / name) for name, future in futures.items()}


@pytest.mark.cluster
def test_slurm_smoke_workflow_gpu_jobs(slurm_env, smoke_runs):
    result, seconds, workdir = smoke_runs["slurm"]
    assert_no_hang(result, workdir)
    assert result.returncode == 0, describe(result, workdir)
    print(f"smoke workflow on SLURM: {seconds:.1f} s")

    report = json.loads((workdir / "results" / "report.json").read_text())
    evaluations = report["evaluate"].values()
    assert len(evaluations) == 2
    job_ids = set()
    for env in evaluations:
        assert env["SLURM_JOB_ID"] and env["SLURM_JOB_ID"].isdigit(), env
        assert env["CUDA_VISIBLE_DEVICES"] in {"0", "1"}, env  # set by SLURM for --gpus=1
        assert env["resources"]["gpu"] == 1
        assert Path(env["python"]).parent == BIN  # the job found this venv
        job_ids.add(env["SLURM_JOB_ID"])
        record = scontrol_job(env["SLURM_JOB_ID"], slurm_env)
        assert "JobState=COMPLETED" in record, record
        assert re.search(r"gres[/:]gpu[:=]1", record), record
    assert len(job_ids) == 2
    # Local rules ran in the submitting process, not as SLURM jobs.
    assert slurm_log_rules(workdir) == {"rule_evaluate"}
    assert report["report"]["SLURM_JOB_ID"] is None
    dataset_env = json.loads((workdir / "results/data/test.jsonl.env.json").read_text())
    assert dataset_env["SLURM_JOB_ID"] is None

    result, _, local = smoke_runs["local"]
    assert result.returncode == 0, describe(result, local)
    for bs in (1, 2):
        rollouts = f"results/eval/bs{bs}/rollouts.jsonl"
        assert (workdir / rollouts).read_bytes() == (local / rollouts).read_bytes()


@pytest.mark.cluster
def test_slurm_failing_job_fails_the_workflow(slurm_env, smoke_runs):
    result, seconds, workdir = smoke_runs["fail"]
    assert_no_hang(result, workdir)
    assert result.returncode != 0, describe(result, workdir)
    print(f"failing workflow on SLURM: {seconds:.1f} s")
    output = result.stdout + result.stderr
    assert "Error in rule evaluate" in output, describe(result, workdir)
    assert re.search(r"SLURM-job '\d+' failed", output), describe(result, workdir)
    logs = list(workdir.glob(".snakemake/slurm_logs/rule_evaluate/1/*.log"))
    assert len(logs) == 1 and "failing on purpose" in logs[0].read_text()
    job_id = logs[0].stem
    assert squeue_jobs(slurm_env)[job_id] == "FAILED"
    assert not (workdir / "results/report.json").exists()


@pytest.mark.cluster
def test_slurm_retry_resumes_from_shard(smoke_runs):
    """A job that dies (as if preempted) is resubmitted (profile `retries`) and resumes."""
    result, seconds, workdir = smoke_runs["retry"]
    assert_no_hang(result, workdir)
    assert result.returncode == 0, describe(result, workdir)
    print(f"retried workflow on SLURM: {seconds:.1f} s")
    env = json.loads((workdir / "results/eval/bs1/env.json").read_text())
    first = env["resumed_from"]
    assert first is not None, env
    assert first["SLURM_JOB_ID"] and env["SLURM_JOB_ID"]
    assert first["SLURM_JOB_ID"] != env["SLURM_JOB_ID"], "the retry must be a new SLURM job"
    assert "Trying to restart job" in result.stdout + result.stderr


# ------------------------------------------------------------------ real pipeline on SLURM


def _pipeline_inputs():
    assert (REPO / "Snakefile").is_file() and (REPO / "tests/configs/tiny.yaml").is_file()
    sys.path.insert(0, str(REPO / "tests"))
    import pipeline_helpers

    return pipeline_helpers


@pytest.mark.cluster
def test_pipeline_on_slurm_matches_local_run(slurm_env, tiny_pipeline_run, tmp_path):
    """The tiny config on SLURM against its local run (`tiny_pipeline_run`, which
    test_pipeline.py checks too: the same config, run once per session)."""
    helpers = _pipeline_inputs()
    config = helpers.tiny_config()
    local = tiny_pipeline_run[0]

    cluster = tmp_path / "slurm"
    cluster.mkdir()
    result, slurm_seconds = slurm_run(
        cluster, slurm_env, "--configfile", str(helpers.write_config(cluster, config)),
        snakefile=REPO / "Snakefile",
    )  # fmt: skip
    assert_no_hang(result, cluster)
    assert result.returncode == 0, "SLURM run failed:\n" + describe(result, cluster)
    print(f"tiny pipeline: SLURM {slurm_seconds:.1f} s")

    batch_sizes = config["batch_sizes"]
    checkpoints = [c["name"] for c in config["checkpoints"]]
    for checkpoint in checkpoints:
        for bs in batch_sizes:
            rel = Path("results", helpers.TINY_RUN, "eval") / checkpoint / "fixed" / f"bs{bs}"
            # identical rollouts, bit for bit
            assert (cluster / rel / "rollouts.jsonl").read_bytes() == (
                local / rel / "rollouts.jsonl"
            ).read_bytes(), rel
            # evaluate ran as a SLURM job with a (fake) GPU allocated ...
            summary = json.loads((cluster / rel / "summary.json").read_text())
            environment = summary["environment"]
            assert environment["SLURM_JOB_ID"], summary
            assert environment["CUDA_VISIBLE_DEVICES"] in {"0", "1"}, summary
            logs = cluster / "results" / helpers.TINY_RUN / "logs" / "evaluate"
            job_log = (logs / checkpoint / "fixed" / f"bs{bs}.log").read_text()
            assert f'"SLURM_JOB_ID": "{environment["SLURM_JOB_ID"]}"' in job_log
            record = scontrol_job(environment["SLURM_JOB_ID"], slurm_env)
            assert re.search(r"gres[/:]gpu[:=]1", record), record
            # ... and the local one did not
            local_summary = json.loads((local / rel / "summary.json").read_text())
            assert local_summary["environment"]["SLURM_JOB_ID"] is None
    # Only evaluate went to SLURM: fetch/download/invariance/report are localrules.
    assert slurm_log_rules(cluster) == {"rule_evaluate"}


# ------------------------------------------------------------------------ cloud profiles (-n)


@pytest.fixture(scope="session")
def cloud_venv() -> Path:
    """A separate venv with the googlebatch/kubernetes plugins (never the project's .venv)."""
    result = subprocess.run(
        ["bash", str(CLUSTER_DIR / "make_cloud_venv.sh")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    outcome = venv_outcome(result.returncode, result.stderr)
    if outcome == "skip":
        pytest.skip(f"the package index is unreachable:\n{result.stderr[-2000:]}")
    if outcome == "fail":
        pytest.fail(f"make_cloud_venv.sh failed (rc={result.returncode}):\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def venv_outcome(returncode: int, output: str) -> str:
    """Outcome of a make_cloud_venv.sh run: "ok", "skip" (its status 77 with its marker: the
    package index cannot be reached) or "fail" (a pin conflict, a bug: anything else)."""
    if returncode == 0:
        return "ok"
    if returncode == START_CANNOT_INSTALL and "[make_cloud_venv] CANNOT INSTALL:" in output:
        return "skip"
    return "fail"


def test_cloud_venv_failures_are_not_skipped():
    assert venv_outcome(1, "ERROR: Cannot install snakemake==9.27.1 (conflicting deps)") == "fail"
    assert venv_outcome(77, "pip: some other error") == "fail"  # 77 without the marker
    marker = "[make_cloud_venv] CANNOT INSTALL: the package index is unreachable"
    assert venv_outcome(77, marker) == "skip"
    assert venv_outcome(0, "") == "ok"


@pytest.mark.parametrize(
    ("pip_env", "outcome"),
    [
        ({"PIP_INDEX_URL": "http://127.0.0.1:9/simple"}, "skip"),  # nothing listens there
        # an index that has pip but not the pins: an install failure, not an unreachable index
        ({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(BUNDLED_WHEELS)}, "fail"),
    ],
)
def test_make_cloud_venv_exits_77_only_for_an_unreachable_index(pip_env, outcome, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PIP_CONFIG_FILE": os.devnull, **pip_env}
    result = subprocess.run(
        ["bash", str(CLUSTER_DIR / "make_cloud_venv.sh"), str(tmp_path / "venv")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert venv_outcome(result.returncode, result.stderr) == outcome, result.stderr[-3000:]


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("googlebatch", {"nvidia_gpu": "nvidia-l4", "googlebatch_machine_type": "g2-standard-8"}),
        ("kubernetes", {"gpu": "1", "gpu_manufacturer": "nvidia"}),
    ],
)
def test_cloud_profile_plans(profile, expected, cloud_venv, gcs_bucket, tmp_path):
    """Dry-run with the real plugins; storage goes to the local GCS emulator (no credentials)."""
    result, _ = run_snakemake(
        ["-s", str(SMOKE_SNAKEFILE), "--profile", f"profiles/{profile}",
         "--directory", str(tmp_path), "-n",
         "--default-storage-prefix", f"gs://{gcs_bucket}/gsm8k-eval"],
        dict(os.environ), timeout=180, snakemake=str(cloud_venv / "bin" / "snakemake"),
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    jobs = planned_jobs(result.stdout)
    assert len(jobs["evaluate"]) == 2
    for job in jobs["evaluate"]:
        for key, value in expected.items():
            assert job["resources"].get(key) == value, job
    for rule in ("download_dataset", "render_report"):
        assert not set(expected) & set(jobs[rule][0]["resources"]), jobs[rule]
    assert f"gs://{gcs_bucket}/gsm8k-eval/results/report.json" in result.stdout


@pytest.mark.cluster
def test_sweep_with_parallel_jobs_on_slurm_matches_local_single_jobs(
    slurm_env, gcs_emulator, tmp_path
):
    """A 3-step sweep of a tiny-model LoRA run on the GCS emulator, each step's evaluation split
    into 2 SLURM jobs (evaluation.parallel_jobs: 2) and gathered locally: the gathered
    rollouts equal a local run's single jobs byte for byte."""
    helpers = _pipeline_inputs()
    from lora_checkpoints import LORA, save_lora_steps

    from gsm8k_eval.models import fetch_model

    steps = {1: 11, 2: 12, 3: 13}  # step -> seed of its LoRA weights
    actor = save_lora_steps(
        fetch_model("random:tiny", tmp_path / "model"), tmp_path / "actor", steps
    )
    url = gcs_emulator.create_bucket("sweep-slurm") + "/tunix/run/actor"
    gcs_emulator.upload_dir(actor, url)
    config = helpers.tiny_config(
        checkpoints=[{"name": "grpo", "source": url, "steps": "all"}],
        lora=LORA, batch_sizes=[2], limit=4,
        sampling={"dtype": "float32", "max_generation_steps": 4, "max_prompt_length": 640},
    )  # fmt: skip
    env = {**venv_env(), **gcs_emulator.env()}

    local = tmp_path / "local"
    local.mkdir()
    single = {**config, "evaluation": {"device": "cpu", "shard_size": 1, "parallel_jobs": 1}}
    cluster = tmp_path / "slurm"
    cluster.mkdir()
    split = {**config, "evaluation": {"device": "cpu", "shard_size": 1, "parallel_jobs": 2}}
    # Side by side (separate folders): the SLURM run spends much of its time waiting for
    # status polls, which the local run uses.
    with ThreadPoolExecutor(2) as pool:
        local_run = pool.submit(
            run_snakemake,
            ["--snakefile", str(REPO / "Snakefile"), "--directory", str(local),
             "--configfile", str(helpers.write_config(local, single)), "--cores", "2"],
            env, timeout=900,
        )  # fmt: skip
        slurm = pool.submit(
            slurm_run, cluster, {**slurm_env, **gcs_emulator.env()},
            "--configfile", str(helpers.write_config(cluster, split)), snakefile=REPO / "Snakefile",
        )  # fmt: skip
    result, local_seconds = local_run.result()
    assert result.returncode == 0, "local run failed:\n" + describe(result, local)
    result, slurm_seconds = slurm.result()
    assert_no_hang(result, cluster)
    assert result.returncode == 0, "SLURM run failed:\n" + describe(result, cluster)
    print(f"3-step sweep: local {local_seconds:.1f} s, SLURM x2 jobs {slurm_seconds:.1f} s")

    job_ids = set()
    for step in steps:
        rel = Path("results", helpers.TINY_RUN, "eval", f"grpo-step{step}", "fixed", "bs2")
        gathered = (cluster / rel / "rollouts.jsonl").read_bytes()
        assert gathered.count(b"\n") == 4
        assert gathered == (local / rel / "rollouts.jsonl").read_bytes(), rel
        manifest = cluster / "results" / helpers.TINY_RUN / "checkpoints" / f"grpo-step{step}"
        assert json.loads((manifest / "manifest.json").read_text())["step"] == step
        summary = json.loads((cluster / rel / "summary.json").read_text())
        assert summary["parallel_jobs"] == 2 and summary["total"] == 4
        for job in summary["jobs"]:  # each part was its own SLURM job with a GPU
            assert job["environment"]["SLURM_JOB_ID"], job
            job_ids.add(job["environment"]["SLURM_JOB_ID"])
    assert len(job_ids) == 2 * len(steps)
    # Only the part evaluations went to SLURM: the gathers are local rules.
    assert slurm_log_rules(cluster) == {"rule_evaluate"}
