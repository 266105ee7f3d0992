"""Data-parallel pretraining on the CPU with gloo, through torchrun itself: the gradients of a 2-process step
equal those of one process over the same episodes, and a 2-process run writes one run directory, stops and
resumes with an unbroken curve."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from irl_core.config import PRETRAIN_PRESETS, preset
from irl_core.distributed import DataParallel, rank_seed
from irl_core.models.transformer import GridTransformer
from irl_core.pretrain import accumulate_gradients, autocast_for

ROOT = Path(__file__).resolve().parent.parent


def torchrun(*args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_two_process_gradients_equal_one_process_over_the_same_episodes(tmp_path):
    r = torchrun(ROOT / "tests" / "ddp_gradients.py", tmp_path / "ddp.safetensors")
    assert r.returncode == 0, r.stderr[-3000:]
    saved = load_file(tmp_path / "ddp.safetensors")
    shares = [{k.split(".", 1)[1]: v for k, v in saved.items() if k.startswith(f"rank{i}.")} for i in (0, 1)]
    assert not torch.equal(shares[0]["layout"], shares[1]["layout"])  # each process drew its own episodes
    batch = {k: torch.cat([shares[0][k], shares[1][k]]) for k in shares[0]}
    cfg = preset(PRETRAIN_PRESETS, "tiny", batch_size=8, chunks=2)
    torch.manual_seed(0)
    model = GridTransformer(cfg.model_config())
    m = accumulate_gradients(model, batch, cfg, autocast_for("fp32", torch.device("cpu")))
    for name, p in model.named_parameters():
        torch.testing.assert_close(saved[f"grad.{name}"], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(saved["metrics"], torch.tensor([m["action_nll"], m["obs_nll"], m["action_acc"]],
                                                              dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_two_process_run_writes_once_stops_and_resumes_unbroken(tmp_path):
    run = tmp_path / "run"
    cmd = ["-m", "irl_core", "pretrain", "--preset", "tiny", "--steps", "20", "--run-dir", run, "--threads", "1"]
    r = torchrun(*cmd, "--stop-at", "10")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("run directory:") == 1 and "2 data-parallel processes" in r.stdout
    st = json.loads((run / "status.json").read_text())
    assert st["status"] == "cancelled" and st["step"] == 10
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["meta"]["processes"] == 2
    r = torchrun(*cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "status.json").read_text())["status"] == "done"
    assert json.loads((run / "config.json").read_text())["processes"] == 2
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20] and rows[-1]["charts/episodes"] == 20 * 16
    assert "eval/action_acc" in rows[-1]


def test_a_two_process_run_that_fails_stops_with_the_message_and_does_not_hang(tmp_path):
    r = torchrun("-m", "irl_core", "pretrain", "--preset", "tiny", "--steps", "2", "--batch-size", "15",
                 "--run-dir", tmp_path / "run", "--threads", "1", timeout=90)
    assert r.returncode != 0
    assert "--batch-size 15 does not split evenly over 2 processes" in r.stdout + r.stderr


def test_shares_and_seed_streams():
    assert DataParallel().share(16) == 16 and DataParallel(1, 4).share(16) == 4
    assert rank_seed(3, 0) == 3 and len({rank_seed(s, r) for s in range(5) for r in range(4)}) == 20
    try:
        DataParallel(0, 3).share(16)
    except ValueError as e:
        assert "does not split evenly over 3 processes" in str(e)
    else:
        raise AssertionError("an uneven split was accepted")
