"""What a ground-truth controller does to the base model's reading of the layout and of its subgoal.

The question (the ``grid5`` issue): in the 5×5 world controllers at the embedding (layer 0) steer as well as
at mid-depth, where the paper finds mid-depth best. Is a layer-0 controller writing an abstract subgoal that
the model then pursues, or rewriting the input (what the model sees of the layout)?

Measured on held-out D* episodes of the base model's world, for each given controller (layer l) and a
readout layer r > l downstream of all of them:

* probes are fitted on the *uncontrolled* residual stream at r (split by episode, as in
  :mod:`irl_core.probing`): the subgoal sought, and, for every colour c, the first move of a shortest path
  from the agent to c (``layout`` probes: how the model reads where each colour is);
* the controller for a subgoal other than the true one, g' = (g + 1) mod K, is injected at l at every step,
  the model runs on to r, and the same probes read the controlled residual:
  ``subgoal_reads_injected`` (the controller's subgoal is what the model now represents),
  ``layout_accuracy`` (its reading of where the colours are still matches the layout), and, in a world
  whose subgoals are colours, ``acts_toward_injected`` (the controlled model's most likely action is a
  shortest-path move to colour g') against ``acts_toward_true``;
* ``relative_norm``: ‖U e‖ / ‖e‖ at l, how large a rewrite the controller makes;
* ``layout_probe_by_layer``: the same layout probes fitted and tested on the uncontrolled stream at every
  layer 0..L: from which layer on "which way to colour c" is a linear read-out. Where it already is at the
  embedding (the agent-centred encoder makes the neighbourhood linear), a linear controller there can write
  "go toward colour g" without the model's later layers having to represent a subgoal.

An abstract subgoal rewrite leaves the layout reading intact while the subgoal reading follows g'; an input
rewrite changes what the model reads of the layout. Choice: ``(g + 1) mod K`` as the injected subgoal, a
fixed other subgoal at every step, so every step has a well-defined counterfactual.
"""
from __future__ import annotations

import numpy as np
import torch

from irl_core.controllers import GTControllers, lower
from irl_core.data import heldout_episodes, training_tensors
from irl_core.models.transformer import GridTransformer, resid_hook_name
from irl_core.probing import _optimal_moves


def _probe_and_score(x_train, y_train, tests: dict[str, tuple[np.ndarray, np.ndarray]], seed: int) -> dict[str, float]:
    """Fit one probe on (x_train, y_train); its accuracy on each named test set (x, y)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, random_state=seed))
    clf.fit(x_train, y_train)
    return {name: float((clf.predict(x) == y).mean()) for name, (x, y) in tests.items()}


@torch.no_grad()
def control_reading(model: GridTransformer, controllers: list[GTControllers], read_layer: int | None = None,
                    episodes: int = 600, seed: int = 0) -> dict:
    """The measurements of the module docstring, one row per controller, as a JSON-ready dict (no controllers:
    only the uncontrolled readings and ``layout_probe_by_layer``)."""
    world = model.world
    layers = [c.layer for c in controllers]
    top = max(layers, default=-1)
    r = (top + 1 if layers else model.n_layers) if read_layer is None else read_layer
    if not top < r <= model.n_layers:
        raise ValueError(f"the readout layer must lie above every controlled layer ({layers}) and at most "
                         f"{model.n_layers}, got {r}")
    eps = {k: v.cpu() for k, v in heldout_episodes(episodes, seed, world).items()}
    obs, actions = training_tensors(eps, world)
    obs = obs[:, :-1]
    mask = (actions >= 0).numpy()
    names = [resid_hook_name(l) for l in range(model.n_layers + 1)]
    (_, _), cache = model.run_with_cache(obs, names_filter=names)
    clean = cache[resid_hook_name(r)].float()
    true_g = eps["subgoal"][:, : actions.shape[1]].long().clamp_min(0)
    injected = (true_g + 1) % world.n_subgoals
    optimal = _optimal_moves(eps, world)  # (N, T, O, 4)
    first_move = optimal.float().argmax(-1).numpy()  # (N, T, O): the first shortest-path move to each colour

    rng = np.random.default_rng(seed)
    test_eps = rng.choice(len(mask), len(mask) // 4, replace=False)
    is_test = np.zeros(len(mask), bool)
    is_test[test_eps] = True
    train, test = mask & ~is_test[:, None], mask & is_test[:, None]

    def flat(x, where):
        return x.numpy()[where] if isinstance(x, torch.Tensor) else x[where]

    rows = []
    controlled = {}
    for ctrl in controllers:
        e = lower(model, obs, ctrl.layer)
        e_hat = ctrl(e, injected)
        resid = model.run_blocks(e_hat, ctrl.layer, r).float()
        logits = model.action_logits(model.run_blocks(resid, r))
        ratio = ((e_hat - e).norm(dim=-1) / e.norm(dim=-1).clamp_min(1e-12))[torch.as_tensor(mask)]
        controlled[ctrl.layer] = (resid, logits, float(ratio.mean()))

    x_train = flat(clean, train)
    sub_tests = {"clean": (flat(clean, test), flat(true_g, test))}
    for layer, (resid, _, _) in controlled.items():
        sub_tests[f"true@{layer}"] = (flat(resid, test), flat(true_g, test))
        sub_tests[f"injected@{layer}"] = (flat(resid, test), flat(injected, test))
    sub = _probe_and_score(x_train, flat(true_g, train), sub_tests, seed)
    layout = {name: [] for name in ["clean", *[f"@{l}" for l in controlled]]}
    for c in range(world.n_colours):
        tests = {"clean": (flat(clean, test), first_move[..., c][test])}
        tests.update({f"@{l}": (flat(resid, test), first_move[..., c][test]) for l, (resid, _, _) in controlled.items()})
        for name, acc in _probe_and_score(x_train, first_move[..., c][train], tests, seed).items():
            layout[name].append(acc)

    by_layer = []
    for name in names:
        x = cache[name].float()
        accs = [_probe_and_score(flat(x, train), first_move[..., c][train],
                                 {"t": (flat(x, test), first_move[..., c][test])}, seed)["t"]
                for c in range(world.n_colours)]
        by_layer.append(float(np.mean(accs)))
    clean_logits = model.action_logits(model.run_blocks(clean, r))
    for ctrl in controllers:
        resid, logits, ratio = controlled[ctrl.layer]
        row = {"layer": ctrl.layer, "relative_norm": ratio,
               "subgoal_reads_injected": sub[f"injected@{ctrl.layer}"], "subgoal_reads_true": sub[f"true@{ctrl.layer}"],
               "layout_accuracy": float(np.mean(layout[f"@{ctrl.layer}"])),
               "layout_accuracy_by_colour": layout[f"@{ctrl.layer}"]}
        if world.subgoal == "colour":
            row.update(_acts_toward(logits, optimal, injected, true_g, mask))
        rows.append(row)
    out = {"world": world.name, "read_layer": r, "episodes": episodes, "seed": seed,
           "clean": {"subgoal_probe": sub["clean"], "layout_accuracy": float(np.mean(layout["clean"])),
                     "layout_accuracy_by_colour": layout["clean"]},
           "layout_probe_by_layer": by_layer, "rows": rows}
    if world.subgoal == "colour":
        out["clean"].update(_acts_toward(clean_logits, optimal, injected, true_g, mask))
    return out


def _acts_toward(logits: torch.Tensor, optimal: torch.Tensor, injected: torch.Tensor, true_g: torch.Tensor,
                 mask: np.ndarray) -> dict[str, float]:
    """How often the most likely action is a shortest-path move to the injected colour, and to the true one
    (colour subgoals: subgoal g is colour g)."""
    a = logits.argmax(-1)  # (N, T)
    hit = optimal.gather(3, a[..., None, None].expand(*a.shape, optimal.shape[2], 1)).squeeze(-1)  # (N, T, O)
    toward_inj = hit.gather(2, injected.unsqueeze(-1)).squeeze(-1).numpy()[mask]
    toward_true = hit.gather(2, true_g.unsqueeze(-1)).squeeze(-1).numpy()[mask]
    return {"acts_toward_injected": float(toward_inj.mean()), "acts_toward_true": float(toward_true.mean())}
