import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(1)  # tests are small; one thread avoids oversubscription on a busy machine


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny base model trained for a few steps, exported as a checkpoint (path without suffix)."""
    from irl_core.config import PRETRAIN_PRESETS
    from irl_core.pretrain import export, train
    from irl_core.runs import Run

    d = tmp_path_factory.mktemp("tiny_base")
    cfg = PRETRAIN_PRESETS["tiny"]
    run = Run(d / "run")
    model = train(cfg, run, "cpu", seed=0, progress=False)
    path = d / "ckpt" / "base"
    export(model, path, run, cfg, 0, "test")
    return path
