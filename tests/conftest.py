"""Shared pytest configuration: fixtures live in plugin modules beside this file."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

pytest_plugins = ["gcs_fixtures", "shared_data", "model_fixtures", "pipeline_fixtures"]
