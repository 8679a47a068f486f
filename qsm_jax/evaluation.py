"""Evaluation episodes on device: a batch of Brax episodes without auto-reset, in one scan.

Used by the training loop (its periodic evaluations) and by experiments/evaluate.py and
render.py (a trained policy, loaded with ``qsm_jax.loading``).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from qsm_jax.envs import check_env, env_sizes, make_env, normalise_env_state, physics_state
from qsm_jax.algorithms import act as agent_act


def run_episodes(env, act: Callable[[jax.Array, jax.Array], jax.Array], reset_key: jax.Array,
                 act_key: jax.Array, num_episodes: int, episode_length: int,
                 action_repeat: int = 1, record: bool = False) -> dict:
  """Runs ``num_episodes`` episodes side by side until the time limit.

  Args:
    env: a batched env without auto-reset (``envs.make_env(..., auto_reset=False)``):
      a finished episode stays done and its later rewards are ignored.
    act: ``act(obs (N, obs_dim), key) -> actions (N, act_dim)``.
    reset_key, act_key: keys for the initial states and for acting.
    num_episodes, episode_length, action_repeat: as in the env's EpisodeWrapper.
    record: also return the trajectory (simulator states: Brax's pipeline states or
      Playground's MJX data, under "pipeline_state"; observations, actions,
      rewards and the alive mask per step), e.g. for rendering.

  Returns:
    dict with ``returns`` and ``lengths`` (N,) (lengths in env steps, action repeat
    included), and ``trajectory`` (leaves (steps + 1, N, ...) for states, (steps, N,
    ...) for the rest) if ``record``.
  """
  state = normalise_env_state(env.reset(jax.random.split(reset_key, num_episodes)))
  steps = math.ceil(episode_length / action_repeat)

  def body(carry, key):
    state, ret, length, alive = carry
    actions = act(state.obs, key)
    next_state = normalise_env_state(env.step(state, actions))
    ret = ret + alive * next_state.reward
    length = length + alive * action_repeat
    out = None
    if record:
      out = {"pipeline_state": physics_state(next_state), "obs": state.obs, "action": actions,
             "reward": next_state.reward, "alive": alive}
    alive = alive * (1.0 - next_state.done)
    return (next_state, ret, length, alive), out

  zeros = jnp.zeros(num_episodes)
  (_, ret, length, _), trajectory = jax.lax.scan(
      body, (state, zeros, zeros, zeros + 1.0), jax.random.split(act_key, steps))
  result = {"returns": ret, "lengths": length}
  if record:
    trajectory["pipeline_state"] = jax.tree.map(
        lambda first, rest: jnp.concatenate([first[None], rest]),
        physics_state(state), trajectory["pipeline_state"])
    result["trajectory"] = trajectory
  return result


def make_eval_env(config, obs_dim: int, act_dim: int, env_name: Optional[str] = None,
                  backend: Optional[str] = None, episode_length: Optional[int] = None):
  """The env a trained policy is evaluated on: the run's own unless another is named.

  Another env is accepted only when its observation and action sizes are the policy's.
  Returns (env, name, backend, episode_length); raises ValueError with a one-line reason.
  """
  name = env_name or config.env
  if backend is None:  # the run's backend for its own env, the default for another env
    backend = config.backend if name == config.env else None
  backend = check_env(name, backend)
  episode_length = episode_length or config.episode_length
  if episode_length < 1:
    raise ValueError(f"--episode_length must be a positive integer, got {episode_length}")
  env = make_env(name, backend, episode_length, config.action_repeat, auto_reset=False)
  sizes = env_sizes(env)
  if sizes != (obs_dim, act_dim):
    raise ValueError(f"the policy was trained on {config.env} (obs {obs_dim}, act {act_dim}) "
                     f"and cannot act in {name} (obs {sizes[0]}, act {sizes[1]})")
  return env, name, backend, episode_length


def make_policy_rollout(env, num_episodes: int, episode_length: int, action_repeat: int,
                        explore: bool = False, temperature: Optional[float] = None,
                        record: bool = False) -> Callable:
  """A jitted ``rollout(agent, key) -> run_episodes(...)`` for any algorithm's agent state.

  The agent is an argument, not a constant, so every agent of a run shares one compile.
  """
  def rollout(agent, key):
    reset_key, act_key = jax.random.split(key)
    act = lambda obs, k: agent_act(agent, obs, k, explore=explore, temperature=temperature)
    return run_episodes(env, act, reset_key, act_key, num_episodes, episode_length,
                        action_repeat, record=record)
  return jax.jit(rollout)


def episode_stats(returns, lengths) -> dict:
  """Mean / std / min / max of episode returns and lengths, as JSON-ready floats."""
  returns, lengths = np.asarray(returns, np.float64), np.asarray(lengths, np.float64)
  return {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
          "return_min": float(returns.min()), "return_max": float(returns.max()),
          "length_mean": float(lengths.mean()), "length_min": float(lengths.min()),
          "length_max": float(lengths.max()),
          "returns": [float(r) for r in returns], "lengths": [int(l) for l in lengths]}
