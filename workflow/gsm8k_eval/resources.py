"""Where the package's data files are: the config schema, report and prompt templates.

One copy of each file lives in the repository where the workflow expects it
(`workflow/schemas/`, `report/templates/`, `workflow/gsm8k_eval/prompts/`). A wheel ships the
first two as the data-only subpackages `gsm8k_eval._schemas` and `gsm8k_eval._templates`
(`package-dir` in pyproject.toml). In a checkout or an editable install the package sits in
`<repo>/workflow/gsm8k_eval` and the repository's files are used; otherwise (a wheel or
`pip install .`) the installed subpackages are.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_NAME = "config.schema.yaml"


def _source_root() -> Path | None:
    """The repository root when running from a checkout (`<root>/workflow/gsm8k_eval`)."""
    return PACKAGE_DIR.parents[1] if PACKAGE_DIR.parent.name == "workflow" else None


def _data_dir(subpackage: str, repo_relative: str) -> Path:
    """The checkout's `repo_relative` directory, else the installed `gsm8k_eval.<subpackage>`."""
    root = _source_root()
    if root is not None and (root / repo_relative).is_dir():
        return root / repo_relative
    spec = importlib.util.find_spec(f"gsm8k_eval.{subpackage}")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise FileNotFoundError(
            f"gsm8k_eval.{subpackage} ({repo_relative}) is missing: reinstall gsm8k-eval"
        )
    return Path(locations[0])


def schema_path() -> Path:
    """The JSON schema of the pipeline config (`workflow/schemas/config.schema.yaml`)."""
    return _data_dir("_schemas", "workflow/schemas") / SCHEMA_NAME


def report_template_dir() -> Path:
    """The directory of the report's Jinja2 templates (`report/templates/`)."""
    return _data_dir("_templates", "report/templates")


def prompt_template_dir() -> Path:
    """The directory of the prompt templates (`prompts/*.j2`, inside the package)."""
    return PACKAGE_DIR / "prompts"
