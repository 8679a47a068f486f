"""Evaluation rules on a run's saved QSM agents: the best of N sampler draws by the
critics' min Q, each draw at its own sampler temperature (a record of the 2026-12-07,
third-session measurement; not part of the package).

  python experiments/results/fresh_resets/reacher/knobs/target_temperature_0_5seeds/eval_rules/eval_rules.py <run_dir>/qsm [seed]

The same 16 episodes as ``evaluate.py --episodes=16 --seed=<seed>`` (default 2) for every
agent and rule; writes <run_dir>/qsm_evalrules_seed<seed>.json (mean return per agent).
"""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from qsm_jax.evaluation import make_eval_env, run_episodes
from qsm_jax.loading import load_run
from qsm_jax.policy import best_by_q, sample_from_params

# Rule name: the sampler temperature of each candidate draw.
RULES = {
    "best10_T1": [1.0] * 10,  # the presets' rule
    "one_T0": [0.0],
    "best10_T0": [0.0] * 10,
    "T0+9xT1": [0.0] + [1.0] * 9,
    "lin0-1x10": list(np.linspace(0, 1, 10)),
    "T0+9xT0.5": [0.0] + [0.5] * 9,
    "5xT0+5xT1": [0.0] * 5 + [1.0] * 5,
}


def main(run_dir, seed):
  run = load_run(run_dir)
  agents = [run.agent(i) for i in range(run.config.num_agents)]
  env, _, _, length = make_eval_env(run.config, agents[0].obs_dim, agents[0].act_dim)

  def make(temps):
    temps = jnp.asarray(temps, jnp.float32)

    def rollout(agent, key):
      reset_key, act_key = jax.random.split(key)  # as evaluate.py's rollout

      def act(obs, k):
        sample_key, _ = jax.random.split(k)  # as policy.sample_actions
        if temps.shape[0] == 1:
          return sample_from_params(agent, agent.actor_params, obs, sample_key, temps[0])
        draws = jax.vmap(lambda kk, t: sample_from_params(agent, agent.actor_params, obs, kk, t))(
            jax.random.split(sample_key, temps.shape[0]), temps)
        return best_by_q(agent, obs, draws)
      return run_episodes(env, act, reset_key, act_key, 16, length, run.config.action_repeat)
    return jax.jit(rollout)

  key = jax.random.PRNGKey(seed)
  out = {}
  for name, temps in RULES.items():
    rollout = make(temps)
    per_agent = [float(jnp.mean(rollout(a, key)["returns"])) for a in agents]
    out[name] = per_agent
    print(f"{name:>12}: mean {np.mean(per_agent):8.1f} ± {np.std(per_agent):6.1f}  "
          f"per agent {[round(p, 1) for p in per_agent]}", flush=True)
  with open(run_dir.rstrip("/") + f"_evalrules_seed{seed}.json", "w") as f:
    json.dump(out, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2)
