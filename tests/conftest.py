import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(1)  # tests are small; one thread avoids oversubscription on a busy machine


def _tiny_base(tmp_path_factory, world: str):
    from irl_core.config import PRETRAIN_PRESETS, preset
    from irl_core.pretrain import export, train
    from irl_core.runs import Run

    d = tmp_path_factory.mktemp(f"tiny_base_{world}")
    cfg = preset(PRETRAIN_PRESETS, "tiny", world=world)
    run = Run(d / "run")
    model = train(cfg, run, "cpu", seed=0, progress=False)
    path = d / "ckpt" / "base"
    export(model, path, run, cfg, 0, "test")
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny base model of the paper's world trained for a few steps, exported as a checkpoint (path without suffix)."""
    return _tiny_base(tmp_path_factory, "grid7")


@pytest.fixture(scope="session")
def tiny_base5(tmp_path_factory):
    """The same in the laptop 5×5 world (grid5)."""
    return _tiny_base(tmp_path_factory, "grid5")
