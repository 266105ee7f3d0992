"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2``: one data-parallel pretraining step
of the tiny preset (fp32, 2 chunks); rank 0 saves the all-reduced gradients, the summed metrics and the
episodes every process drew, so that the test can redo the step in one process over the same episodes."""
import sys

import torch
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel

from irl_core.config import PRETRAIN_PRESETS, preset
from irl_core.data import expert_episodes
from irl_core.distributed import init_data_parallel, rank_seed
from irl_core.envs.grid import BatchedGridPinpad
from irl_core.models.transformer import GridTransformer
from irl_core.pretrain import accumulate_gradients, autocast_for

torch.set_num_threads(1)
dp, dev = init_data_parallel("cpu")
cfg = preset(PRETRAIN_PRESETS, "tiny", batch_size=8, chunks=2)
torch.manual_seed(0)
model = GridTransformer(cfg.model_config())
ddp = DistributedDataParallel(model, find_unused_parameters=cfg.obs_coef == 0)
env = BatchedGridPinpad(dp.share(cfg.batch_size), cfg.tasks, dev, seed=rank_seed(0, dp.rank), world=cfg.world)
batch = expert_episodes(env, cfg.epsilon)
total = dp.sum({"steps": float(batch["length"].sum())}, dev)["steps"]
metrics = dp.sum(accumulate_gradients(model, batch, cfg, autocast_for("fp32", dev), ddp, total, dp.world), dev)
batches = dp.gather(batch)
if dp.main:
    out = {f"grad.{name}": p.grad for name, p in model.named_parameters()}
    out.update({f"rank{r}.{k}": v.contiguous() for r, b in enumerate(batches) for k, v in b.items()})
    out["metrics"] = torch.tensor([metrics["action_nll"], metrics["obs_nll"], metrics["action_acc"]], dtype=torch.float64)
    save_file(out, sys.argv[1])
dp.close()
