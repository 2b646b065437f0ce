"""Markdown report (Jinja2) and figures (matplotlib) for a GSM8K evaluation.

Modules: `inputs` (loading summaries, rollouts, invariance files, manifests, config),
`tables` (typed rows and paired statistics), `settings` (checkpoints, configuration,
provenance), `findings` (key findings and recommendations, decided from numbers), `figures`
(PNG plots), `render` (Jinja filters, context, rendering) and `protocols` (several runs, one
protocol each, side by side: `gsm8k-eval compare-protocols`). Numbers stay typed until the
templates in `report/templates/` format them with the filters in `render`.
"""

from gsm8k_eval.report.inputs import (
    DEFAULT_TEMPLATE_DIR,
    ReportDataError,
    ReportInputs,
    config_to_show,
    inputs_from_results,
)
from gsm8k_eval.report.protocols import render_protocols
from gsm8k_eval.report.render import (
    ExternalReference,
    render_report,
    render_report_from_results,
)

__all__ = [
    "DEFAULT_TEMPLATE_DIR",
    "ExternalReference",
    "ReportDataError",
    "ReportInputs",
    "config_to_show",
    "inputs_from_results",
    "render_protocols",
    "render_report",
    "render_report_from_results",
]
