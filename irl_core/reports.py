"""Reading the shipped reports (``checkpoints/<env>/reports/*.json``) for the app, with clear errors."""
from __future__ import annotations

from pathlib import Path

from irl_core.checkpoints import SHIPPED, CheckpointError, read_json

# what makes each report, for pages that find one missing
REPORT_COMMANDS = {
    "probes": "python -m irl_core probes --checkpoint checkpoints/grid/base",
    "pretrain_curve": "python -m irl_core pretrain --preset cpu --export checkpoints/grid/base",
}


class MissingReport(CheckpointError):
    """A report that has not been made yet; the message says which command makes it."""


def load_report(name: str, env: str = "grid", root: str | Path | None = None) -> dict:
    """``checkpoints/<env>/reports/<name>.json``; raises MissingReport (with the command) or CheckpointError."""
    path = Path(root or SHIPPED) / env / "reports" / f"{name}.json"
    if not path.exists():
        raise MissingReport(f"{path} is missing; make it with `{REPORT_COMMANDS.get(name, 'the stage that writes it')}`")
    report = read_json(path)
    if not isinstance(report, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return report
