"""DeepMind Control Suite tasks through MuJoCo Playground (the optional `dmc` extra).

The end-to-end tests run only when Playground is installed (CI installs it, through the
`test` extra); the missing-extra error is tested either way.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax.envs as envs
from qsm_jax.envs import check_env, make_env
from test_training import TINY_LOOP

needs_playground = pytest.mark.skipif(envs._playground() is None,  # pylint: disable=protected-access
                                      reason="MuJoCo Playground (the dmc extra) not installed")
TINY_DMC = dataclasses.replace(TINY_LOOP, env="dmc/cartpole_swingup", episode_length=30,
                               total_steps=160, eval_every=80)


def test_missing_extra_says_what_to_install(monkeypatch):
  monkeypatch.setattr(envs, "_playground", lambda: None)
  with pytest.raises(ValueError, match=r"^env 'dmc/cartpole_swingup' is a DeepMind Control "
                                       r"Suite task from MuJoCo Playground, which is not "
                                       r"installed: pip install -e '\.\[dmc\]'$"):
    check_env("dmc/cartpole_swingup", None)
  with pytest.raises(ValueError, match=r"DM Control Suite: dmc/<task> with pip install"):
    check_env("pong", None)


@needs_playground
def test_dmc_names_and_errors():
  tasks = envs.dmc_tasks()
  assert tasks["dmc/cartpole_swingup"] == "CartpoleSwingup"
  assert tasks["dmc/ball_in_cup"] == "BallInCup" and tasks["dmc/cheetah_run"] == "CheetahRun"
  assert len(tasks) >= 25  # every task of Playground's dm_control_suite registry
  assert check_env("dmc/finger_spin", None) == "mjx"
  with pytest.raises(ValueError, match=r"unknown env 'dmc/cartpole_swing'; valid DM Control "
                                       r"Suite envs: dmc/acrobot_swingup, "):
    check_env("dmc/cartpole_swing", None)
  with pytest.raises(ValueError, match="runs on MJX only"):
    check_env("dmc/cartpole_swingup", "spring")
  with pytest.raises(ValueError, match=r"unknown env 'pong'; valid envs: ant, .*; DM Control "
                                       r"Suite: dmc/acrobot_swingup, "):
    check_env("pong", None)


@needs_playground
def test_dmc_time_limit_is_a_truncation_with_the_true_next_obs():
  """DMC episodes end only by the time limit: done with truncation 1 (so the replay mask is
  1, bootstrapped), a new initial state's observation in obs (not the first one) and the
  true s' in info['next_obs']."""
  from qsm_jax.training import _transition  # pylint: disable=import-outside-toplevel
  env = make_env("dmc/cartpole_swingup", None, episode_length=5)
  state = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(0), 3))
  first_obs = state.obs
  step = jax.jit(env.step)
  actions = jnp.full((3, 1), 0.7)
  for i in range(5):
    prev, state = state, step(state, actions)
    assert np.all(state.done == (i == 4))
  assert np.all(state.info["truncation"] == 1)
  assert not np.any(np.all(np.isclose(state.obs, first_obs), axis=-1))  # fresh starts
  assert not np.allclose(state.info["next_obs"], state.obs)
  batch = _transition(prev, state, actions, 1.0)
  np.testing.assert_array_equal(batch.mask, 1.0)  # a continuation, not a terminal
  np.testing.assert_array_equal(batch.next_obs, state.info["next_obs"])


@pytest.mark.slow
@needs_playground
def test_tiny_dmc_run_checkpoint_loads_with_the_same_actions(tmp_path):
  from qsm_jax import load_policy  # pylint: disable=import-outside-toplevel
  from qsm_jax.policy import sample_actions  # pylint: disable=import-outside-toplevel
  from qsm_jax.runner import RunOptions, train  # pylint: disable=import-outside-toplevel
  run_dir = str(tmp_path / "run")
  result = train(TINY_DMC, RunOptions(run_dir=run_dir, checkpoint_every=80, write_plot=False),
                 log=lambda s: None)
  assert [r["env_steps"] for r in result.rows] == [80, 120, 160]
  mask = np.asarray(result.train_state.replay.data.mask[0, :160])
  assert mask.min() == 1.0  # no terminal in 160 steps: every episode end was a truncation
  assert np.isfinite(result.rows[-1]["eval_return_mean"])
  obs = np.linspace(-1, 1, 3 * 5, dtype=np.float32).reshape(3, 5)  # cartpole: obs 5, act 1
  key = jax.random.PRNGKey(3)
  agent = jax.tree.map(lambda x: x[0], result.train_state.agent)
  expected = np.asarray(sample_actions(agent, obs, key, explore=False))
  policy = load_policy(run_dir)
  np.testing.assert_array_equal(np.asarray(policy(obs, key)), expected)
  assert policy.env_steps == 160
  # Resume continues from the checkpoint (MJX data's zero-size fields included).
  longer = dataclasses.replace(TINY_DMC, total_steps=200)
  resumed = train(longer, RunOptions(run_dir=run_dir, resume=True, write_plot=False),
                  log=lambda s: None)
  assert [r["env_steps"] for r in resumed.rows] == [80, 120, 160, 200]
