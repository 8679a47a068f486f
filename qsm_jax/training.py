"""The on-device training loop: acting, replay insertion, sampling and updates in lax.scan.

``make_trainer(cfg)`` returns pure functions over a ``TrainState`` for ONE agent (seed);
the runner vmaps them over seeds and jits them. Nothing here touches the host.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp

from qsm_jax.algorithms import get_algorithm
from qsm_jax.config import QSMHyperparams, TrainConfig
from qsm_jax.envs import check_env, env_sizes, make_env, normalise_env_state
from qsm_jax.evaluation import run_episodes
from qsm_jax.replay import ReplayState, replay_add, replay_init, replay_sample
from qsm_jax.shared import Batch


@flax.struct.dataclass
class TrainState:
  """The whole state of one agent's run: everything a checkpoint needs to resume exactly."""
  agent: Any             # the algorithm's state (QSMState, SACState or TD3State)
  env_state: Any          # brax.envs.State of the num_envs training envs
  replay: ReplayState
  key: jax.Array          # the training key stream
  env_steps: jax.Array    # int32 env steps taken (warm-up included)


class Trainer(NamedTuple):
  """Pure functions of one training run (one seed); vmap them over seeds."""
  backend: str
  obs_dim: int
  act_dim: int
  init: Callable[[jax.Array, Optional[QSMHyperparams]], TrainState]
  warmup: Callable[[TrainState], TrainState]
  train_chunk: Callable[[TrainState], tuple[TrainState, dict]]
  evaluate: Callable[[Any, jax.Array], dict]


def _transition(env_state, next_state, actions, reward_scale) -> Batch:
  done = next_state.done
  truncated = next_state.info["truncation"]
  return Batch(obs=env_state.obs, action=actions, reward=next_state.reward * reward_scale,
               next_obs=next_state.info["next_obs"],
               mask=1.0 - done * (1.0 - truncated))  # 0 only at true terminals


def check_divisible(cfg: TrainConfig, num_devices: int) -> None:
  """Raises ValueError unless the envs, batch, eval envs and buffer split evenly."""
  for name in ("num_envs", "batch_size", "num_eval_envs"):
    if getattr(cfg, name) % num_devices:
      raise ValueError(f"--{name} ({getattr(cfg, name)}) must be divisible by the number of "
                       f"devices ({num_devices})")


def make_trainer(cfg: TrainConfig, num_devices: int = 1,
                 axis_name: Optional[str] = None) -> Trainer:
  """Builds the env and the pure init / warmup / train_chunk / evaluate functions.

  With ``num_devices > 1`` the functions are one device's part of a data-parallel run,
  to be mapped over ``axis_name`` (``pmap``): each device steps ``num_envs /
  num_devices`` envs, keeps that share of the replay buffer, samples ``batch_size /
  num_devices`` rows per update and averages gradients through the update's axis
  name. Acting, env and sampling keys are folded with the device index (distinct
  streams); the update key is shared (global-batch semantics), so parameters stay
  identical on every device.
  """
  cfg.validate()
  check_divisible(cfg, num_devices)
  algorithm = get_algorithm(cfg.algo)
  if (num_devices > 1) != (axis_name is not None):
    raise ValueError("a data-parallel trainer needs both num_devices > 1 and an axis_name")
  env = make_env(cfg.env, cfg.backend, cfg.episode_length, cfg.action_repeat,
                 fresh_resets=cfg.fresh_resets)
  eval_env = make_env(cfg.env, cfg.backend, cfg.episode_length, cfg.action_repeat,
                      auto_reset=False)
  obs_dim, act_dim = env_sizes(env)
  n = cfg.num_envs // num_devices                # envs on this device
  batch_size = cfg.batch_size // num_devices     # rows of each update's batch on this device
  num_eval = cfg.num_eval_envs // num_devices
  updates = cfg.updates_per_iteration

  def device_key(key):
    return jax.random.fold_in(key, jax.lax.axis_index(axis_name)) if axis_name else key

  def psum(x):
    return jax.lax.psum(x, axis_name) if axis_name else x

  def env_reset(key):
    return normalise_env_state(env.reset(jax.random.split(key, n)))

  def init(key: jax.Array, hparams: Optional[QSMHyperparams] = None) -> TrainState:
    agent_key, env_key, loop_key = jax.random.split(key, 3)
    agent = algorithm.init(agent_key, obs_dim, act_dim, cfg.qsm,
                           cfg.hparams if hparams is None else hparams)
    env_state = env_reset(device_key(env_key))
    example = Batch(obs=jnp.zeros(obs_dim), action=jnp.zeros(act_dim), reward=jnp.zeros(()),
                    next_obs=jnp.zeros(obs_dim), mask=jnp.zeros(()))
    return TrainState(agent=agent, env_state=env_state,
                      replay=replay_init(example, cfg.replay_capacity // num_devices),
                      key=loop_key,
                      env_steps=jnp.zeros((), jnp.int32))

  def step_envs(ts: TrainState, actions: jax.Array):
    next_state = normalise_env_state(env.step(ts.env_state, actions))
    replay = replay_add(ts.replay, _transition(ts.env_state, next_state, actions,
                                               cfg.reward_scale))
    return (ts.replace(env_state=next_state, replay=replay, env_steps=ts.env_steps + cfg.num_envs),
            next_state)

  def warmup(ts: TrainState) -> TrainState:
    def body(ts, _):
      key, act_key = jax.random.split(ts.key)
      actions = jax.random.uniform(device_key(act_key), (n, act_dim), minval=-1.0, maxval=1.0)
      ts, _ = step_envs(ts.replace(key=key), actions)
      return ts, None
    ts, _ = jax.lax.scan(body, ts, None, length=cfg.warmup_iterations)
    return ts

  def iteration(ts: TrainState, _):
    key, act_key, sample_key, update_key = jax.random.split(ts.key, 4)
    actions = algorithm.act(ts.agent, ts.env_state.obs, device_key(act_key), explore=True)
    ts, next_state = step_envs(ts.replace(key=key), actions)
    batches = replay_sample(ts.replay, device_key(sample_key), (updates, batch_size))

    update_keys = jax.random.split(update_key, updates)
    if algorithm.update_pair is not None and updates % 2 == 0:
      # Pairs of updates (TD3's delayed actor step), the same keys and batches in order.
      pair = lambda x: x.reshape((updates // 2, 2) + x.shape[1:])
      agent, metrics = jax.lax.scan(
          lambda agent, inputs: algorithm.update_pair(agent, *inputs, axis_name=axis_name),
          ts.agent, (jax.tree.map(pair, batches), pair(update_keys)))
    else:
      agent, metrics = jax.lax.scan(
          lambda agent, inputs: algorithm.update(agent, *inputs, axis_name=axis_name),
          ts.agent, (batches, update_keys))
    metrics = jax.tree.map(jnp.mean, metrics)
    done = next_state.done
    metrics.update(
        action_saturation=psum(jnp.mean(jnp.abs(actions) > 0.95)) / num_devices,
        episodes=psum(jnp.sum(done)),
        episode_return_sum=psum(jnp.sum(done * next_state.info["episode_metrics"]["sum_reward"])))
    return ts.replace(agent=agent), metrics

  def train_chunk(ts: TrainState) -> tuple[TrainState, dict]:
    ts, metrics = jax.lax.scan(iteration, ts, None, length=cfg.iterations_per_chunk)
    episodes = jnp.sum(metrics.pop("episodes"))
    returns = jnp.sum(metrics.pop("episode_return_sum"))
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics["train_episodes"] = episodes
    metrics["train_return"] = jnp.where(episodes > 0, returns / jnp.maximum(episodes, 1), jnp.nan)
    return ts, metrics

  def evaluate(agent, key: jax.Array) -> dict:
    reset_key, act_key = jax.random.split(key)
    act = lambda obs, k: algorithm.act(agent, obs, k, explore=False)
    episodes = run_episodes(eval_env, act, device_key(reset_key), device_key(act_key), num_eval,
                            cfg.episode_length, cfg.action_repeat)
    ret, length = episodes["returns"], episodes["lengths"]
    if axis_name:  # every device's episodes
      ret = jax.lax.all_gather(ret, axis_name).reshape(-1)
      length = jax.lax.all_gather(length, axis_name).reshape(-1)
    return {"eval_return": jnp.mean(ret), "eval_return_std": jnp.std(ret),
            "eval_episode_length": jnp.mean(length)}

  return Trainer(backend=check_env(cfg.env, cfg.backend), obs_dim=obs_dim, act_dim=act_dim, init=init, warmup=warmup,
                 train_chunk=train_chunk, evaluate=evaluate)
