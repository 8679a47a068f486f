"""Brax environments for training and evaluation, wrapped by Brax's own wrappers."""
from __future__ import annotations

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


def env_names() -> list[str]:
  """The Brax env names this project supports (Brax's registry minus its test env)."""
  return sorted(n for n in brax.envs._envs if n != "fast")  # pylint: disable=protected-access


def check_env(name: str, backend: str | None) -> str:
  """Validates env and backend names; returns the backend to use."""
  if name not in env_names():
    raise ValueError(f"unknown env {name!r}; valid envs: {', '.join(env_names())}")
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


def make_env(name: str, backend: str | None = None, episode_length: int = 1000,
             action_repeat: int = 1, auto_reset: bool = True) -> brax.envs.Env:
  """A batched Brax env: Episode (time limit, action repeat) -> NextObs -> Vmap -> AutoReset.

  ``reset`` takes a batch of keys (N, 2) and ``step`` a batch of actions (N, act_dim).
  With ``auto_reset=False`` (evaluation) finished envs stay done.
  """
  backend = check_env(name, backend)
  env = brax.envs.get_environment(name, backend=backend)
  env = brax_wrappers.EpisodeWrapper(env, episode_length, action_repeat)
  env = NextObsWrapper(env)
  env = brax_wrappers.VmapWrapper(env)
  if auto_reset:
    env = brax_wrappers.AutoResetWrapper(env)
  return env
