"""Gymnasium registration of the project's environments (idempotent)."""
from __future__ import annotations

import gymnasium as gym

# id → (entry point, default keyword arguments): one id per world variant, as Minigrid registers its sizes
_ENVS = {
    "irl_core/GridPinpad-v0": ("irl_core.envs.grid:GridPinpadEnv", {"world": "grid7"}),
    "irl_core/GridPinpad5x5-v0": ("irl_core.envs.grid:GridPinpadEnv", {"world": "grid5"}),
    "irl_core/AntPinpad-v0": ("irl_core.envs.ant:AntPinpadEnv", {}),
}


def register_envs() -> None:
    for env_id, (entry_point, kwargs) in _ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)
