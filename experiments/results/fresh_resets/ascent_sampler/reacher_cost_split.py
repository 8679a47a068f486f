"""Reacher's evaluation return split into its two terms: distance to the target and control cost.

Brax's reacher pays -|fingertip - target| - |a|^2 per step. For each run folder given:
every agent of its final checkpoint, 16 evaluation episodes (seed 2) with the run's
noise-free policy (QSM: the best of eval_best_of draws by Q; SAC: tanh of the mean).
Prints per agent and on average the return, its distance and control parts, and mean |a|.

  python experiments/results/fresh_resets/ascent_sampler/reacher_cost_split.py <run_dir>...
"""
import sys

import jax
import numpy as np

from qsm_jax.envs import make_env
from qsm_jax.evaluation import make_policy_rollout
from qsm_jax.loading import load_run

for run_dir in sys.argv[1:]:
  run = load_run(run_dir)
  cfg = run.config
  env = make_env(cfg.env, cfg.backend, cfg.episode_length, cfg.action_repeat, auto_reset=False)
  rollout = make_policy_rollout(env, 16, cfg.episode_length, cfg.action_repeat, record=True)
  rows = []
  for i in range(cfg.num_agents):
    out = rollout(run.agent(i), jax.random.PRNGKey(2))
    actions = np.asarray(out["trajectory"]["action"])
    alive = np.asarray(out["trajectory"]["alive"])
    control = -(np.square(actions).sum(-1) * alive).sum(0)
    returns = np.asarray(out["returns"])
    rows.append((returns.mean(), (returns - control).mean(), control.mean(),
                 np.abs(actions).mean()))
  r = np.array(rows)
  print(f"{run_dir} ({cfg.algo}, {run.env_steps} env steps): return {r[:, 0].mean():.1f} = "
        f"distance {r[:, 1].mean():.1f} + control {r[:, 2].mean():.1f}, mean |a| "
        f"{r[:, 3].mean():.3f}; per agent return {np.round(r[:, 0]).astype(int).tolist()}, "
        f"distance {np.round(r[:, 1]).astype(int).tolist()}, control "
        f"{np.round(r[:, 2]).astype(int).tolist()}", flush=True)
