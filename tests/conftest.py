import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(1)  # tests are small; one thread avoids oversubscription on a busy machine


@pytest.fixture(autouse=True)
def _navigation_app_under_apptest(monkeypatch):
    """AppTest runs an app whose folder holds ``pages/`` as a legacy (pages-directory) multipage app on every run:
    it resets ``PagesManager.uses_pages_directory`` and the manager sets it from the folder. A Streamlit server
    clears the flag as soon as the entry script calls ``st.navigation``, as ``app.py`` does first; here it is
    cleared as each run's manager is made, so AppTest runs ``app.py`` as the server does (the browser tests drive
    the real server)."""
    from streamlit.runtime.pages_manager import PagesManager
    init = PagesManager.__init__

    def navigation_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False
    monkeypatch.setattr(PagesManager, "__init__", navigation_init)


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
