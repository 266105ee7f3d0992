"""Gymnasium registration of the project's environments (idempotent)."""
from __future__ import annotations

import gymnasium as gym

_ENVS = {
    "irl_core/GridPinpad-v0": "irl_core.envs.grid:GridPinpadEnv",
    "irl_core/AntPinpad-v0": "irl_core.envs.ant:AntPinpadEnv",
}


def register_envs() -> None:
    for env_id, entry_point in _ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)
