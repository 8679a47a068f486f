"""Environments for training and evaluation: Brax's, and (optional) MuJoCo Playground's
DeepMind Control Suite as ``dmc/<task>``, both wrapped alike: Brax's episode and vmap
wrappers, ours for the true next observation and for auto-resets to fresh initial states.

DM Control Suite tasks are named ``dmc/`` + Playground's name in snake case
(``CartpoleSwingup`` -> ``dmc/cartpole_swingup``; ``dmc_tasks()`` lists them). They need
the ``dmc`` extra (``pip install -e '.[dmc]'``), which this module imports only when such a
name is used. They run MJX's JAX implementation on any device (Playground's default,
'warp', needs NVIDIA Warp), with Playground's control interval and action repeat 1, as
the paper's DMC runs; every episode end is a time limit (a truncation, bootstrapped),
except a physics blow-up to NaN, which Playground marks done.
"""
from __future__ import annotations

import functools
import re

import brax.envs
import jax
import jax.numpy as jnp
from brax.envs.wrappers import training as brax_wrappers

# Envs that train here and the backend each uses by default.
# - generalized for the CPU learning benchmarks (inverted_pendulum, reacher, hopper): its
#   control interval and dynamics are MuJoCo's. On spring, inverted_pendulum acts every
#   0.08 s instead of MuJoCo's 0.04 s and nothing learns it; spring's contacts and joints
#   are approximations of MuJoCo's. Their step costs little next to an update here.
# - spring elsewhere: the fastest backend on CPU, and finite where generalized is not (ant
#   with random actions produced NaNs on generalized).
# - swimmer only supports generalized.
# generalized does not run in multi-process runs: Brax builds its arrays on
# jax.devices()[0] (mjx.make_data), which only process 0 can address; use spring there.
DEFAULT_BACKENDS = {
    "ant": "spring",
    "halfcheetah": "spring",
    "hopper": "generalized",
    "humanoid": "spring",
    "humanoidstandup": "spring",
    "inverted_pendulum": "generalized",
    "inverted_double_pendulum": "spring",
    "pusher": "spring",
    "reacher": "generalized",
    "walker2d": "spring",
    "swimmer": "generalized",
}
BACKENDS = ("spring", "positional", "generalized", "mjx")
# Backend limits we know of, so a bad choice fails with a reason, not deep in Brax.
UNSUPPORTED_BACKENDS = {"swimmer": ("spring", "positional", "mjx")}


DMC_PREFIX = "dmc/"
DMC_EXTRA = "pip install -e '.[dmc]'"
DMC_BACKEND = "mjx"  # Playground's envs are MJX models; the only backend they have


def env_names() -> list[str]:
  """The Brax env names this project supports (Brax's registry minus its test env)."""
  return sorted(n for n in brax.envs._envs if n != "fast")  # pylint: disable=protected-access


def is_dmc(name: str) -> bool:
  """Whether ``name`` names a DM Control Suite task (``dmc/<task>``)."""
  return name.startswith(DMC_PREFIX)


def _playground():
  try:
    import mujoco_playground  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return mujoco_playground


def dmc_tasks() -> dict[str, str]:
  """``dmc/<task>`` -> Playground's name, for every task of Playground's DM Control Suite
  registry ({} without the ``dmc`` extra)."""
  playground = _playground()
  if playground is None:
    return {}
  snake = lambda n: re.sub(r"(?<!^)(?=[A-Z])", "_", n).lower()
  return {DMC_PREFIX + snake(n): n for n in playground.dm_control_suite.ALL_ENVS}


def check_env(name: str, backend: str | None) -> str:
  """Validates env and backend names; returns the backend to use."""
  if is_dmc(name):
    if _playground() is None:
      raise ValueError(f"env {name!r} is a DeepMind Control Suite task from MuJoCo "
                       f"Playground, which is not installed: {DMC_EXTRA}")
    if name not in dmc_tasks():
      raise ValueError(f"unknown env {name!r}; valid DM Control Suite envs: "
                       f"{', '.join(sorted(dmc_tasks()))}")
    if backend not in (None, DMC_BACKEND):
      raise ValueError(f"env {name!r} runs on MJX only: leave --backend out (got {backend!r})")
    return DMC_BACKEND
  if name not in env_names():
    dmc = (", ".join(sorted(dmc_tasks())) if _playground() is not None
           else f"dmc/<task> with {DMC_EXTRA}")
    raise ValueError(f"unknown env {name!r}; valid envs: {', '.join(env_names())}; "
                     f"DM Control Suite: {dmc}")
  backend = backend or DEFAULT_BACKENDS.get(name, "generalized")
  if backend not in BACKENDS:
    raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
  if backend in UNSUPPORTED_BACKENDS.get(name, ()):
    raise ValueError(f"env {name!r} does not support backend {backend!r}")
  return backend


def normalise_env_state(state):
  """Makes every leaf of a Brax state strong-typed.

  Brax's step returns some float fields (done, truncation, ...) weak-typed while reset
  returns them strong. One type for the scan carry means a state restored from a
  checkpoint runs through the very same compiled program.
  """
  return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), state)


class NextObsWrapper(brax.envs.Wrapper):
  """Keeps the true next observation in ``info['next_obs']``.

  Brax's AutoResetWrapper replaces ``obs`` with the reset observation when an episode
  ends; a time-limit truncation still needs the real s' to bootstrap from.
  """

  def reset(self, rng):
    state = self.env.reset(rng)
    state.info["next_obs"] = state.obs
    return state

  def step(self, state, action):
    state = self.env.step(state, action)
    state.info["next_obs"] = state.obs
    return state


class FreshAutoResetWrapper(brax.envs.Wrapper):
  """Restarts a finished env from a newly drawn initial state (a batched env's wrapper).

  Brax's AutoResetWrapper (and Playground's, by default) restarts a finished env from the
  state it was first reset to, so a run trains on only ``num_envs`` initial states per
  seed (``num_envs`` reacher targets) and is evaluated on fresh ones. This wrapper keeps
  a PRNG key per env in ``info['reset_key']`` and resets finished envs with the next
  key. As Brax's wrapper it keeps what the step produced for the transition: reward,
  done, ``truncation``, ``next_obs`` (the true s') and the episode bookkeeping
  (``steps``, ``episode_done``, ``episode_metrics``); the rest of the state (physics,
  obs and the env's own ``info``) is the fresh episode's. A reset runs for every env at
  every step (``where``, not a branch, as under ``vmap`` any branch would be).
  """

  KEY = "reset_key"
  KEPT_INFO = ("next_obs", "truncation", "steps", "episode_done", "episode_metrics")

  def reset(self, rng: jax.Array):
    keys = jax.vmap(jax.random.split)(rng)
    state = self.env.reset(keys[:, 0])
    state.info[self.KEY] = keys[:, 1]
    return state

  def step(self, state, action: jax.Array):
    keys = jax.vmap(jax.random.split)(state.info[self.KEY])
    # A copy (Brax's wrappers write into info) without our key: the env below then sees
    # the info an evaluation env has, so their steps share one trace (_simulator).
    info = {name: value for name, value in state.info.items() if name != self.KEY}
    if "steps" in info:  # the previous step ended an episode: count from 0 again
      info["steps"] = jnp.where(state.done, jnp.zeros_like(info["steps"]), info["steps"])
    stepped = self.env.step(state.replace(info=info, done=jnp.zeros_like(state.done)), action)
    fresh = self.env.reset(keys[:, 0])

    def where_done(new, old):
      return jnp.where(stepped.done.reshape(stepped.done.shape + (1,) * (old.ndim - 1)), new,
                       old)

    info = {name: value if name in self.KEPT_INFO
            else jax.tree.map(where_done, fresh.info[name], value)
            for name, value in stepped.info.items()}
    info[self.KEY] = keys[:, 1]
    physics = "pipeline_state" if hasattr(stepped, "pipeline_state") else "data"
    return stepped.replace(
        obs=jax.tree.map(where_done, fresh.obs, stepped.obs), info=info,
        **{physics: jax.tree.map(where_done, getattr(fresh, physics),
                                 getattr(stepped, physics))})


@functools.lru_cache(maxsize=None)
def _simulator(name: str, backend: str):
  """The unwrapped env, one object per (name, backend) in a process, with ``reset`` and
  ``step`` jitted.

  JAX caches the trace of a jitted function, so every program built on these envs (a
  run's init, warm-up, training chunk and evaluation, ``env_sizes``, the next run in the
  same process) traces the simulator's reset and step once per process instead of once
  per program: about 2 s each time for Brax's generalized pendulum on CPU, 8 of them in a
  tiny run. Compiled code is the same (XLA inlines the inner calls). Not in multi-process
  runs: there JAX refuses the training program built on them ("Closing over jax.Array that
  spans non-addressable devices"; tests/test_parallel.py's two-process run).
  """
  if is_dmc(name):
    env = _playground().dm_control_suite.load(dmc_tasks()[name],
                                              config_overrides={"impl": "jax"})
  else:
    env = brax.envs.get_environment(name, backend=backend)
  if jax.process_count() == 1:
    env.reset, env.step = jax.jit(env.reset), jax.jit(env.step)
  return env


def make_env(name: str, backend: str | None = None, episode_length: int = 1000,
             action_repeat: int = 1, auto_reset: bool = True,
             fresh_resets: bool = True) -> brax.envs.Env:
  """A batched env: Episode (time limit, action repeat) -> NextObs -> Vmap -> AutoReset.

  ``reset`` takes a batch of keys (N, 2) and ``step`` a batch of actions (N, act_dim).
  With ``auto_reset=False`` (evaluation) finished envs stay done. A finished env
  restarts from a newly drawn initial state (``FreshAutoResetWrapper``), or with
  ``fresh_resets=False`` from its first one (Brax's / Playground's AutoResetWrapper:
  what runs saved before the option had).
  """
  backend = check_env(name, backend)
  env = brax_wrappers.EpisodeWrapper(_simulator(name, backend), episode_length, action_repeat)
  env = NextObsWrapper(env)
  env = brax_wrappers.VmapWrapper(env)
  if not auto_reset:
    return env
  if fresh_resets:
    return FreshAutoResetWrapper(env)
  if is_dmc(name):  # keeps info (so next_obs and truncation survive it), as Brax's does
    return _playground().wrapper.BraxAutoResetWrapper(env)
  return brax_wrappers.AutoResetWrapper(env)


def env_sizes(env) -> tuple[int, int]:
  """(observation size, action size) of ``env``, by tracing its reset, not running it.

  Brax's own ``observation_size`` runs one reset eagerly, op by op: about 10 s for the
  generalized inverted_pendulum on CPU, paid by every run, evaluation and load.
  """
  obs = jax.eval_shape(env.unwrapped.reset, jax.random.PRNGKey(0)).obs
  return int(obs.shape[-1]), int(env.action_size)


def physics_state(state):
  """The simulator state inside an env state: Brax's ``pipeline_state``, Playground's
  ``data``."""
  return state.pipeline_state if hasattr(state, "pipeline_state") else state.data
