"""Drawing gridworld-pinpad layouts (of any world: G is read from the layout) as RGB arrays with the shared
palette, for gymnasium's render. Imports nothing of ``irl_core.envs.grid``, so the env can import it."""
from __future__ import annotations

import numpy as np

from irl_core.palette import AGENT, COLOURS, EMPTY, WALL as WALL_COLOUR, hex_to_rgb


WALL_CODE = -2  # the layout code of a wall (irl_core.envs.grid.WALL)


def grid_side(layout: np.ndarray) -> int:
    """G of a layout given as (G²,) or (G, G) codes (the layout's shape says which world it is)."""
    n = int(np.asarray(layout).size)
    G = int(round(n ** 0.5))
    if G * G != n:
        raise ValueError(f"a layout of {n} cells is not a square grid")
    return G


def render_grid_rgb(layout: np.ndarray, agent: int | None = None, cell_px: int = 32) -> np.ndarray:
    """``layout`` (G²,) or (G, G) codes → (G·cell_px, G·cell_px, 3) uint8 image; the agent is a black disc."""
    G = grid_side(layout)
    layout = np.asarray(layout).reshape(G, G)
    img = np.zeros((G * cell_px, G * cell_px, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:cell_px, 0:cell_px]
    disc = (yy - cell_px / 2 + 0.5) ** 2 + (xx - cell_px / 2 + 0.5) ** 2 <= (cell_px * 0.3) ** 2
    for r in range(G):
        for c in range(G):
            code = int(layout[r, c])
            colour = COLOURS[code] if code >= 0 else (WALL_COLOUR if code == WALL_CODE else EMPTY)
            tile = img[r * cell_px:(r + 1) * cell_px, c * cell_px:(c + 1) * cell_px]
            tile[:] = hex_to_rgb(colour)
            tile[0, :] = tile[:, 0] = (200, 200, 200)
            if agent is not None and r * G + c == int(agent):
                tile[disc] = hex_to_rgb(AGENT)
    return img
