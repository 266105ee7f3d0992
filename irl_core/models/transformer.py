"""The gridworld base model: a causal pre-norm Transformer over observations (docs/paper.md §2, Table A4).

Input: the observation o_t only (one token per time step, no actions). Outputs at step t: logits of the
expert's action a_t (categorical) and of the next observation o_{t+1} (the λ term). Blocks are pre-norm
(LayerNorm → multi-head causal attention with T5-style relative-position biases in 32 buckets → residual
add → LayerNorm → ReLU MLP → residual add), and every weight is initialised by variance scaling with
scale 0.1 (truncated normal, std = sqrt(0.1 / fan_in)).

Choices where the paper is silent (also in README "Choices"):
* The world (``config.world``, ``grid7`` or ``grid5``) fixes the observation's size and layout; shapes
  below are written for ``grid7`` (637 = 49 cells × 13 channels; ``grid5``: 150 = 25 × 6, a 9×9 canvas).
* Observation likelihood: independent Bernoulli over the 637 binary features of o_{t+1}.
* Observation embedding: ``linear`` (a linear map of the 637-d one-hot) or ``agent_centred`` (the same
  one-hot re-laid on a (2G−1)² = 13×13 canvas centred on the agent, flattened and mapped linearly, plus a learned
  embedding of the agent's absolute cell). Both are linear maps of a fixed rearrangement of o_t, so no
  information is added or dropped; the second makes "what is around me" linear, which docs/notes.md measured
  to learn navigation an order of magnitude faster.
* Each layer has its own relative-position bias table (T5 shares one); context = the episode (≤ 100).

Residual stream layers (probes, controllers): layer 0 is the embedding (``hook_embed``), layer l ≥ 1 is
the output of block l−1 (``blocks.{l-1}.hook_resid_post``); L/2 = 3 is "after block 3" as in the paper.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from irl_core.envs.worlds import GridWorld, get_world
from irl_core.models.hooks import HookedModule, HookPoint

KIND = "grid-transformer"


@dataclass
class TransformerConfig:
    """Architecture of the base model."""

    d_model: int = 128          # n_e, residual width
    n_layers: int = 6           # depth L
    n_heads: int = 4            # attention heads
    d_mlp: int = 256            # MLP hidden width
    n_buckets: int = 32         # relative-position buckets
    max_distance: int = 128     # distance beyond which buckets saturate
    init_scale: float = 0.1     # variance-scaling factor of every initialiser
    encoder: str = "agent_centred"  # "linear" or "agent_centred"
    world: str = "grid7"        # the gridworld it reads (irl_core.envs.worlds); fixes obs_dim
    obs_dim: int | None = None  # G²(O+W+1), derived from the world (637 for grid7)
    n_actions: int = 4
    max_len: int = 100          # longest sequence the KV cache holds

    def __post_init__(self) -> None:
        world = get_world(self.world)
        if self.obs_dim is None:
            self.obs_dim = world.obs_dim
        if self.obs_dim != world.obs_dim:
            raise ValueError(f"obs_dim={self.obs_dim} does not match world {world.name} ({world.obs_dim})")
        if self.encoder not in ("linear", "agent_centred"):
            raise ValueError(f"unknown encoder {self.encoder!r}; expected 'linear' or 'agent_centred'")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")


def init_linear(layer: nn.Linear, scale: float) -> None:
    std = math.sqrt(scale / layer.in_features)
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def relative_bucket(rel: torch.Tensor, n_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's unidirectional bucketing of ``rel = key_pos − query_pos`` (≤ 0 under the causal mask)."""
    n = (-rel).clamp_min(0)
    max_exact = n_buckets // 2
    large = max_exact + (torch.log(n.float().clamp_min(1) / max_exact) / math.log(max_distance / max_exact)
                         * (n_buckets - max_exact)).long()
    return torch.where(n < max_exact, n, large.clamp_max(n_buckets - 1))


def _canvas_index(world: GridWorld) -> torch.Tensor:
    """(49, 169): for an agent at each cell, the source cell of each 13×13 canvas position (49 = outside)."""
    G, N_CELLS = world.size, world.n_cells
    idx = torch.full((N_CELLS, (2 * G - 1) ** 2), N_CELLS, dtype=torch.long)
    for a in range(N_CELLS):
        ar, ac = divmod(a, G)
        for k in range((2 * G - 1) ** 2):
            dr, dc = divmod(k, 2 * G - 1)
            r, c = ar + dr - (G - 1), ac + dc - (G - 1)
            if 0 <= r < G and 0 <= c < G:
                idx[a, k] = r * G + c
    return idx


class AgentCentredEncoder(nn.Module):
    """o_t (…, 637) → (…, d): the grid re-centred on the agent, plus the agent's absolute cell."""

    def __init__(self, d_model: int, init_scale: float, world: GridWorld):
        super().__init__()
        self.world = world
        self.register_buffer("canvas_index", _canvas_index(world), persistent=False)
        n_canvas = (2 * world.size - 1) ** 2
        self.proj = nn.Linear(n_canvas * world.n_channels, d_model)
        self.position = nn.Linear(world.n_cells, d_model, bias=False)
        init_linear(self.proj, init_scale)
        init_linear(self.position, init_scale)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-1]
        N_CELLS, N_CHANNELS, AGENT_CHANNEL = self.world.n_cells, self.world.n_channels, self.world.agent_channel
        cells = obs.reshape(-1, N_CELLS, N_CHANNELS)  # (N, 49, 13)
        agent_onehot = cells[..., AGENT_CHANNEL]  # (N, 49)
        agent = agent_onehot.argmax(-1)  # (N,)
        # channel 12 becomes "this canvas position lies inside the grid"
        feats = torch.cat([cells[..., :AGENT_CHANNEL], torch.ones_like(cells[..., :1])], -1)
        feats = torch.cat([feats, torch.zeros_like(feats[:, :1])], 1)  # (N, 50, 13), row N_CELLS = outside
        canvas = feats.gather(1, self.canvas_index[agent].unsqueeze(-1).expand(-1, -1, N_CHANNELS))  # (N, 169, 13)
        out = self.proj(canvas.flatten(1)) + self.position(agent_onehot)
        return out.reshape(*lead, -1)


class KVCache:
    """Per-layer key/value buffers for incremental decoding of B sequences in lockstep."""

    def __init__(self, n_layers: int, batch: int, n_heads: int, max_len: int, d_head: int, device, dtype):
        shape = (batch, n_heads, max_len, d_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.length = [0] * n_layers
        self.max_len = max_len

    def select(self, index: torch.Tensor) -> None:
        """Keep only the sequences ``index`` (e.g. drop finished episodes)."""
        self.k = [k[index] for k in self.k]
        self.v = [v[index] for v in self.v]


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.rel_bias = nn.Embedding(cfg.n_buckets, cfg.n_heads)
        self.n_buckets, self.max_distance = cfg.n_buckets, cfg.max_distance
        init_linear(self.qkv, cfg.init_scale)
        init_linear(self.out, cfg.init_scale)
        nn.init.normal_(self.rel_bias.weight, std=math.sqrt(cfg.init_scale))

    def bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """(H, Tq, Tk) additive bias, −inf above the diagonal."""
        rel = k_pos.view(1, -1) - q_pos.view(-1, 1)  # (Tq, Tk)
        b = self.rel_bias(relative_bucket(rel, self.n_buckets, self.max_distance)).permute(2, 0, 1)
        return b.masked_fill((rel > 0).unsqueeze(0), float("-inf"))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # 3 × (B, H, T, dh)
        start = 0
        if cache is not None:
            start = cache.length[layer]
            if start + T > cache.max_len:
                raise ValueError(f"sequence longer than the cache ({cache.max_len} steps)")
            cache.k[layer][:, :, start:start + T] = k.to(cache.k[layer].dtype)
            cache.v[layer][:, :, start:start + T] = v.to(cache.v[layer].dtype)
            cache.length[layer] = start + T
            k, v = cache.k[layer][:, :, : start + T].to(q.dtype), cache.v[layer][:, :, : start + T].to(q.dtype)
        pos = torch.arange(start + T, device=x.device)
        bias = self.bias(pos[start:], pos).to(q.dtype)  # (H, T, start+T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))  # (B, H, T, dh)
        return self.out(y.transpose(1, 2).reshape(B, T, d))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.mlp_in, self.mlp_out = nn.Linear(cfg.d_model, cfg.d_mlp), nn.Linear(cfg.d_mlp, cfg.d_model)
        init_linear(self.mlp_in, cfg.init_scale)
        init_linear(self.mlp_out, cfg.init_scale)
        self.hook_resid_pre, self.hook_attn_out = HookPoint(), HookPoint()
        self.hook_resid_mid, self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln1(x), cache, layer)))
        x = x + self.hook_mlp_out(self.mlp_out(F.relu(self.mlp_in(self.ln2(x)))))
        return self.hook_resid_post(x)


class GridTransformer(HookedModule):
    """Causal Transformer over observation sequences, with hooks and a KV-cached incremental step."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.world = get_world(cfg.world)
        if cfg.encoder == "linear":
            self.embed = nn.Linear(cfg.obs_dim, cfg.d_model)
            init_linear(self.embed, cfg.init_scale)
        else:
            self.embed = AgentCentredEncoder(cfg.d_model, cfg.init_scale, self.world)
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model)
        self.action_head = nn.Linear(cfg.d_model, cfg.n_actions)
        self.obs_head = nn.Linear(cfg.d_model, cfg.obs_dim)
        init_linear(self.action_head, cfg.init_scale)
        init_linear(self.obs_head, cfg.init_scale)
        self.setup_hooks()

    @property
    def n_layers(self) -> int:
        return self.cfg.n_layers

    # --- pieces ----------------------------------------------------------------------------------
    def embed_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, T, 637) observations (any dtype) → (B, T, d) residual stream at layer 0."""
        return self.hook_embed(self.embed(obs.to(self.action_head.weight.dtype)))

    def run_blocks(self, resid: torch.Tensor, start: int = 0, stop: int | None = None,
                   cache: KVCache | None = None) -> torch.Tensor:
        """Apply blocks ``[start, stop)``: the residual at layer ``start`` → the residual at layer ``stop``."""
        stop = self.cfg.n_layers if stop is None else stop
        for i in range(start, stop):
            resid = self.blocks[i](resid, cache, i)
        return resid

    def action_logits(self, resid: torch.Tensor) -> torch.Tensor:
        """Final residual → action logits (…, 4) alone (no next-observation head: what acting needs)."""
        return self.action_head(self.ln_final(resid))

    def heads(self, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final residual → (action logits (…, 4), next-observation logits (…, 637))."""
        h = self.ln_final(resid)
        return self.action_head(h), self.obs_head(h)

    # --- whole passes ----------------------------------------------------------------------------
    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 637) → (action logits (B, T, 4), next-observation logits (B, T, 637))."""
        return self.heads(self.run_blocks(self.embed_obs(obs)))

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        w = self.action_head.weight
        return KVCache(self.cfg.n_layers, batch, self.cfg.n_heads, max_len or self.cfg.max_len,
                       self.cfg.d_model // self.cfg.n_heads, w.device, w.dtype)

    def step(self, obs_t: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, torch.Tensor]:
        """One incremental step: (B, 637) observation → (action logits (B, 4), obs logits (B, 637))."""
        a, o = self.heads(self.run_blocks(self.embed_obs(obs_t.unsqueeze(1)), cache=cache))
        return a[:, 0], o[:, 0]

    def config_dict(self) -> dict:
        return asdict(self.cfg)


def resid_hook_name(layer: int) -> str:
    """The hook holding the residual stream at ``layer`` (0 = embedding, l = after block l−1)."""
    return "hook_embed" if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"


def pretrain_loss(model: GridTransformer, obs: torch.Tensor, actions: torch.Tensor, obs_coef: float,
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 5 on a padded batch.

    ``obs`` (B, T+1, 637) holds o_1..o_{T+1} (zeros after each episode's end), ``actions`` (B, T) the
    expert's actions (−1 = padding). Returns the loss and detached metrics (action NLL and accuracy).
    """
    inp, nxt = obs[:, :-1], obs[:, 1:]
    mask = actions >= 0  # (B, T)
    act_logits, obs_logits = model(inp)
    n = mask.sum().clamp_min(1)
    nll = F.cross_entropy(act_logits[mask].float(), actions[mask].long(), reduction="sum") / n
    loss = nll
    obs_nll = torch.zeros((), device=obs.device)
    if obs_coef > 0:
        obs_nll = F.binary_cross_entropy_with_logits(obs_logits[mask].float(), nxt[mask].float(), reduction="sum") / n
        loss = loss + obs_coef * obs_nll
    acc = (act_logits[mask].argmax(-1) == actions[mask]).float().mean()
    return loss, {"action_nll": nll.detach(), "obs_nll": obs_nll.detach(), "action_acc": acc.detach()}
