"""The spread (mean |a - a_0|, what QSMConfig.spread_target holds) of trained agents.

For each run folder given: every agent of its final checkpoint, at the 4 observations its
training envs were in when it was saved, 256 sampler draws each at temperature 1 and the
deterministic draw (temperature 0) from the same keys. Prints the spread (mean over
agents, and per agent) and the share of action dims beyond 0.95 for both draws.

  python experiments/results/fresh_resets/spread_controller/trained_spread.py <run_dir>...
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

from qsm_jax.checkpoint import Checkpointer
from qsm_jax.loading import load_run
from qsm_jax.policy import sample_from_params

for run_dir in sys.argv[1:]:
  run = load_run(run_dir)
  saved, _ = Checkpointer(run_dir + "/checkpoints").restore_arrays()
  observations = np.asarray(saved["env_state"]["obs"])  # (agents, envs, obs_dim)
  out = []
  for i in range(run.config.num_agents):
    agent = run.agent(i)
    obs = jnp.repeat(jnp.asarray(observations[i]), 256, axis=0)
    key = jax.random.PRNGKey(i)
    a1 = sample_from_params(agent, agent.actor_params, obs, key, 1.0)
    a0 = sample_from_params(agent, agent.actor_params, obs, key, 0.0)
    out.append((float(jnp.mean(jnp.abs(a1 - a0))), float(jnp.mean(jnp.abs(a1) > 0.95)),
                float(jnp.mean(jnp.abs(a0) > 0.95))))
  o = np.array(out)
  print(f"{run_dir}: |a1-a0| {o[:, 0].mean():.3f} (per agent {np.round(o[:, 0], 3)}), "
        f"sat1 {o[:, 1].mean():.2f}, sat0 {o[:, 2].mean():.2f}", flush=True)
