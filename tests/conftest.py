"""Shared pytest configuration: fixtures live in plugin modules beside this file."""

import os

import pytest
from hypothesis import settings

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

# Hypothesis's per-example deadline (200 ms) times the machine, not our code: with two xdist
# workers on two cores an example can wait for a core. Property tests keep every example.
settings.register_profile("shared-cores", deadline=None)
settings.load_profile("shared-cores")

pytest_plugins = ["gcs_fixtures", "shared_data", "model_fixtures", "pipeline_fixtures"]

# Tests that share an expensive session fixture run in one pytest-xdist worker (the fixture is
# made once); every other module is its own group, so a module's fixtures are made once too.
SHARED_GROUPS = {"test_pipeline": "tiny_pipeline", "test_cluster": "tiny_pipeline"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (`--dist loadgroup`)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test the xdist group of its module (`SHARED_GROUPS` joins some modules)."""
    for item in items:
        module = item.path.stem
        item.add_marker(pytest.mark.xdist_group(SHARED_GROUPS.get(module, module)))
