"""Drawing gridworld-pinpad layouts as RGB arrays with the shared palette (for gymnasium's render)."""
from __future__ import annotations

import numpy as np

from irl_core.envs.grid import G, WALL
from irl_core.palette import AGENT, COLOURS, EMPTY, WALL as WALL_COLOUR, hex_to_rgb


def render_grid_rgb(layout: np.ndarray, agent: int | None = None, cell_px: int = 32) -> np.ndarray:
    """``layout`` (49,) or (7, 7) codes → (7·cell_px, 7·cell_px, 3) uint8 image; the agent is a black disc."""
    layout = np.asarray(layout).reshape(G, G)
    img = np.zeros((G * cell_px, G * cell_px, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:cell_px, 0:cell_px]
    disc = (yy - cell_px / 2 + 0.5) ** 2 + (xx - cell_px / 2 + 0.5) ** 2 <= (cell_px * 0.3) ** 2
    for r in range(G):
        for c in range(G):
            code = int(layout[r, c])
            colour = COLOURS[code] if code >= 0 else (WALL_COLOUR if code == WALL else EMPTY)
            tile = img[r * cell_px:(r + 1) * cell_px, c * cell_px:(c + 1) * cell_px]
            tile[:] = hex_to_rgb(colour)
            tile[0, :] = tile[:, 0] = (200, 200, 200)
            if agent is not None and r * G + c == int(agent):
                tile[disc] = hex_to_rgb(AGENT)
    return img
