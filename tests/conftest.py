"""Shared pytest configuration: fixtures live in plugin modules beside this file."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

# Hypothesis's per-example deadline (200 ms) times the machine, not our code: with two xdist
# workers on two cores an example can wait for a core. Property tests keep every example.
settings.register_profile("shared-cores", deadline=None)
settings.load_profile("shared-cores")

pytest_plugins = ["gcs_fixtures", "shared_data", "model_fixtures", "pipeline_fixtures"]

# With `--dist loadfile` (scripts/test.sh) a test module runs in one pytest-xdist worker, so its
# module fixtures (e.g. test_cluster.py's SLURM cluster) are made once; modules that share an
# expensive session fixture are joined into one group here.
SHARED_GROUPS = {"test_pipeline": "tiny_pipeline", "test_cluster": "tiny_pipeline"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile`, with the modules of `SHARED_GROUPS` in one worker (None: xdist's own
    scheduler for any other `--dist`)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = Path(nodeid.split("::", 1)[0]).stem
            return SHARED_GROUPS.get(module, module)

    return ModuleGroups(config, log)
