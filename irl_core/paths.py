"""Where things live: the repository root, the checkpoints root and the shipped checkpoint sets.

Imports nothing but the standard library (no torch, no streamlit), so both the app's sidebar
(``irl_core.app_state``) and library modules (``irl_core.checkpoints``, ``irl_core.reports``) can use it
without importing each other.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# the shipped checkpoint sets of each environment, in the app's catalogue order (the app opens on the first)
SHIPPED_SETS: dict[str, tuple[str, ...]] = {"grid": ("grid5", "grid"), "ant": ("ant",)}


def checkpoints_root() -> Path:
    """``$IRL_CHECKPOINTS_DIR`` if set, else the repository's ``checkpoints/`` (read at call time)."""
    env = os.environ.get("IRL_CHECKPOINTS_DIR")
    return Path(env) if env else REPO_ROOT / "checkpoints"


def repo_relative(path) -> str:
    """``path`` relative to the repository when it lies inside it (what shipped files record, so that they hold
    no machine's absolute paths), else unchanged."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return str(path)
