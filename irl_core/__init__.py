"""irl_core: the library under the app — environments, experts, base models, probes, metacontroller and
internal RL for "Emergent temporal abstractions in autoregressive models enable hierarchical RL"."""
from irl_core.envs.registration import register_envs

register_envs()
