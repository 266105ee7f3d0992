"""Reinforcement learning after pretraining (Fig. 8): critic-free PPO (`ppo`), internal RL over the
metacontroller's codes (`internal`, Algorithm 1), the method registry (`methods`), the curves (`curves`), and
the baselines (`baselines/`: raw-action RL, CompILE). Imports flow ppo → internal, baselines → methods."""
