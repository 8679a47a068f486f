"""The on-device loop: env wrappers, transitions, no recompiles, and learning."""
import collections
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs import base as brax_base

from qsm_jax import envs
from qsm_jax.config import QSMConfig, QSMHyperparams
from qsm_jax.envs import check_env, env_names, env_sizes, make_env
from qsm_jax.config import TrainConfig
from qsm_jax.training import make_trainer

TINY_LOOP = TrainConfig(
    env="inverted_pendulum", num_envs=4, num_eval_envs=4, total_steps=200, warmup_steps=40,
    batch_size=16, buffer_size=400, log_every=40, eval_every=40, episode_length=50,
    qsm=QSMConfig(actor_hidden=(16, 16), time_hidden=(8, 8), fourier_size=8,
                  critic_hidden=(16, 16)))


@pytest.mark.parametrize("change, message", [
    (dict(env="pong"), "unknown env 'pong'; valid envs: ant, "),
    (dict(backend="bullet"), "unknown backend"),
    (dict(env="swimmer", backend="spring"), "does not support backend"),
    (dict(num_envs=0), "--num_envs must be a positive integer"),
    (dict(batch_size=1000), "--batch_size (1000) is larger than the replay buffer (400)"),
    (dict(utd=0.1), "--utd * --num_envs must be a positive integer"),
    (dict(warmup_steps=2), "--warmup_steps (2) must be at least --num_envs"),
    (dict(warmup_steps=500), "must be below --total_steps"),
    (dict(hparams=QSMHyperparams(gamma=2.0)), "gamma=2.0 is out of range"),
    (dict(sweep_name="Mq", sweep_values=(1.0,)), "'Mq' is not a numeric hyperparameter"),
    (dict(sweep_name="M_q"), "--sweep: no values given for M_q"),
    (dict(sweep_name="gamma", sweep_values=(0.9, 1.5)), "gamma=1.5 is out of range"),
])
def test_invalid_settings_fail_early_with_a_reason(change, message):
  with pytest.raises(ValueError) as err:
    dataclasses.replace(TINY_LOOP, **change).validate()
  assert message in str(err.value)


def test_env_registry_lists_brax_envs():
  names = env_names()
  for name in ("ant", "halfcheetah", "hopper", "humanoid", "inverted_pendulum", "walker2d"):
    assert name in names
  assert "fast" not in names


@pytest.mark.parametrize("name, sizes", [("inverted_pendulum", (4, 1)), ("reacher", (11, 2)),
                                         ("hopper", (11, 3))])
def test_env_sizes_are_the_envs_observation_and_action_sizes(name, sizes):
  """MuJoCo's sizes for these tasks, found by tracing reset (no physics runs)."""
  assert env_sizes(make_env(name)) == sizes


def test_truncation_keeps_true_next_obs_and_is_not_terminal():
  # Episodes of 3 steps end by the time limit: the stored s' must be the physics state,
  # not the reset observation the auto-reset puts in `obs`. On spring the pole stays up
  # for 3 steps of 0.5, so every end is a time limit (on generalized it can fall).
  env = make_env("inverted_pendulum", backend="spring", episode_length=3)
  state = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(0), 2))
  step = jax.jit(env.step)
  actions = jnp.full((2, 1), 0.5)
  for _ in range(3):
    prev_obs, state = state.obs, step(state, actions)
  assert np.all(state.done == 1) and np.all(state.info["truncation"] == 1)
  assert not np.allclose(state.info["next_obs"], state.obs)  # true s' kept apart from
  assert not np.allclose(state.info["next_obs"], prev_obs)   # the reset observation
  np.testing.assert_allclose(state.obs[:, 2:], 0.0, atol=0.011)  # a reset: near rest


@pytest.mark.parametrize("fresh", [True, False])
def test_finished_env_restarts_from_a_new_initial_state(fresh):
  """Reacher's target (obs[4:6]) is drawn at reset. With fresh resets every episode of
  every env gets its own; with fresh_resets=False (Brax's AutoResetWrapper) each env
  returns to its first one. Either way a finished step keeps its own transition: the
  true s' (the episode's target), the truncation flag and the episode's reward sum."""
  env = make_env("reacher", episode_length=3, fresh_resets=fresh)
  state = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(0), 2))
  step = jax.jit(env.step)
  targets, rewards = [np.asarray(state.obs[:, 4:6])], 0.0
  for i in range(9):
    state = step(state, jnp.full((2, 2), 0.3))
    rewards = rewards + state.reward
    np.testing.assert_array_equal(state.done, float(i % 3 == 2))  # the count restarts
    if i % 3 == 2:
      np.testing.assert_array_equal(state.info["truncation"], 1.0)
      np.testing.assert_array_equal(state.info["next_obs"][:, 4:6], targets[-1])
      np.testing.assert_allclose(state.info["episode_metrics"]["sum_reward"], rewards,
                                 rtol=1e-5)
      targets.append(np.asarray(state.obs[:, 4:6]))
      rewards = 0.0
    else:
      np.testing.assert_array_equal(state.obs[:, 4:6], targets[-1])
  targets = np.concatenate(targets)  # 4 starts x 2 envs
  distinct = len({tuple(t) for t in targets.round(6)})
  assert distinct == (8 if fresh else 2)


def test_training_and_evaluation_envs_trace_the_simulator_once(monkeypatch):
  """The simulator's reset and step are traced once per process, not once per program
  (envs._simulator: about 2 s a trace for the generalized pendulum, 8 traces in a tiny
  run before): the training env (fresh resets: a reset inside every step), the evaluation
  env and env_sizes share them."""
  calls = collections.Counter()
  for name in ("pipeline_init", "pipeline_step"):
    def counted(self, *args, _name=name, _method=getattr(brax_base.PipelineEnv, name)):
      calls[_name] += 1
      return _method(self, *args)
    monkeypatch.setattr(brax_base.PipelineEnv, name, counted)
  envs._simulator.cache_clear()  # pylint: disable=protected-access
  try:
    train_env = make_env("inverted_pendulum", backend="spring", episode_length=5)
    eval_env = make_env("inverted_pendulum", backend="spring", episode_length=5,
                        auto_reset=False)
    assert env_sizes(train_env) == (4, 1)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    for env in (train_env, eval_env):
      state = jax.eval_shape(env.reset, keys)
      jax.eval_shape(env.step, state, jnp.zeros((3, 1)))
    assert calls == {"pipeline_init": 1, "pipeline_step": 1}
  finally:
    envs._simulator.cache_clear()  # pylint: disable=protected-access


def test_loop_fills_replay_with_masks_and_never_recompiles():
  trainer = make_trainer(TINY_LOOP)
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  ts = jax.jit(jax.vmap(trainer.warmup))(jax.jit(jax.vmap(trainer.init))(keys))
  assert np.all(ts.env_steps == 40) and np.all(ts.replay.size == 40)
  chunk = jax.jit(jax.vmap(trainer.train_chunk))
  ts, m1 = chunk(ts)
  ts, m2 = chunk(ts)
  assert chunk._cache_size() == 1  # pylint: disable=protected-access
  assert np.all(ts.env_steps == 120)
  assert np.all(ts.agent.step == 2 * 10 * 4)  # chunks x iterations x (utd * num_envs)
  mask = np.asarray(ts.replay.data.mask[:, :120])
  assert set(np.unique(mask).tolist()) <= {0.0, 1.0} and mask.min() == 0.0  # pendulum falls
  assert not np.array_equal(m1["actor_loss"][0], m1["actor_loss"][1])  # seeds differ
  ev = jax.jit(jax.vmap(trainer.evaluate))(ts.agent, keys)
  assert ev["eval_return"].shape == (2,)
  assert np.all(ev["eval_episode_length"] >= 1) and np.all(ev["eval_episode_length"] <= 50)


@pytest.mark.slow
@pytest.mark.optimized
def test_short_run_learns_inverted_pendulum_and_keeps_it(tmp_path):
  """Fixed seed, the default run's QSM (the presets' setting: running scale-free target
  with M_q 1, the critic's rewards scaled down above 1, a' of the critic's target from the
  deterministic sampler, best of 10 draws at evaluation, the ascent sampler at temperature
  0.25; generalized backend), the preset's 40k env steps: the eval return climbs from near
  the zero action's 26 to the maximum, 1000, and ends there (measured for seed 0: 1000
  from 17k, two dips between 27k and 33k, to 104 at the lowest, 1000 from 35k to the end;
  experiments/RESULTS.md)."""
  from qsm_jax.presets import preset  # pylint: disable=import-outside-toplevel
  from qsm_jax.runner import RunOptions, train  # pylint: disable=import-outside-toplevel
  settings = preset("inverted_pendulum")
  cfg = TrainConfig(env="inverted_pendulum", num_envs=4, num_eval_envs=8, total_steps=40_000,
                    warmup_steps=1000, utd=1.0, batch_size=256, buffer_size=100_000,
                    log_every=2000, eval_every=2000, seed=0,
                    qsm=QSMConfig(**settings["qsm"]), hparams=QSMHyperparams(**settings["hparams"]))
  assert cfg.qsm.score_scale == "running" and cfg.hparams.M_q == 1.0
  assert cfg.qsm.critic_reward_norm == "shrink" and cfg.qsm.eval_best_of == 10
  assert cfg.qsm.target_temperature == 0.0
  assert cfg.qsm.ascent_sampler and cfg.hparams.temperature == 0.25
  assert check_env("inverted_pendulum", None) == "generalized"
  result = train(cfg, RunOptions(run_dir=str(tmp_path / "run"), checkpoint_every=0,
                                 write_plot=False), log=lambda s: None)
  evals = [row["eval_return_mean"] for row in result.rows]
  print(f"inverted_pendulum eval return: {[round(e) for e in evals]}")
  assert max(evals[:3]) < 200  # it starts low (measured 60-82)
  assert evals[-1] > 500  # 20x the zero action (measured 1000)
  assert evals[-1] >= 0.8 * max(evals)  # the curve holds: no drift after the peak
  assert min(evals[-3:]) >= 0.8 * max(evals)  # and ends there (measured: 1000 at the last 4)


def test_config_json_round_trip_and_foreign_config():
  cfg = dataclasses.replace(TINY_LOOP, hparams=QSMHyperparams(M_q=7.5), num_seeds=3,
                            sweep_name="tau", sweep_values=(0.01, 0.5))
  assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
  foreign = {**cfg.to_dict(), "learning_rate": 1e-3}
  with pytest.raises(ValueError, match="does not match this version"):
    TrainConfig.from_dict(foreign)


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_run")  # the plain run reuses test_loading's 2-seed programs
def test_sweep_agent_is_the_run_with_that_value(tmp_path):
  """A 2-value x 2-seed sweep is one program of 4 agents; agent (M_q=5, seed #1) is the
  same agent as seed #1 of a plain 2-seed run with M_q=5 (whose programs, when another
  2-seed run of these settings traced them before, were traced for M_q=1)."""
  from qsm_jax.runner import RunOptions, train  # pylint: disable=import-outside-toplevel
  quiet = dict(log=lambda s: None)
  opts = lambda name: RunOptions(run_dir=str(tmp_path / name), checkpoint_every=0,
                                 write_plot=False)
  sweep = dataclasses.replace(TINY_LOOP, total_steps=120, num_seeds=2, sweep_name="M_q",
                              sweep_values=(1.0, 5.0))
  assert sweep.num_agents == 4
  assert [sweep.agent_label(i) for i in range(4)] == [
      "M_q=1 seed #0", "M_q=1 seed #1", "M_q=5 seed #0", "M_q=5 seed #1"]
  swept = train(sweep, opts("sweep"), **quiet)
  np.testing.assert_array_equal(swept.train_state.agent.hparams.M_q, [1, 1, 5, 5])
  assert len(swept.rows[-1]["eval_return"]) == 4
  plain = train(dataclasses.replace(TINY_LOOP, total_steps=120, num_seeds=2,
                                    hparams=QSMHyperparams(M_q=5.0)), opts("plain"), **quiet)
  leaves = lambda ts, i: [x[i] for x in jax.tree.leaves(ts.agent.actor_params)]
  for a, b in zip(leaves(swept.train_state, 3), leaves(plain.train_state, 1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # ... and the other value really trained another agent from the same seed.
  assert any(not np.allclose(a, b, atol=1e-4) for a, b in
             zip(leaves(swept.train_state, 1), leaves(swept.train_state, 3)))


def test_resume_of_a_run_saved_before_a_config_field_existed(tmp_path):
  """A config.json without ``algo`` (older runs) reads as the default 'qsm' on resume."""
  from qsm_jax.runner import RunOptions, train  # pylint: disable=import-outside-toplevel
  saved = TINY_LOOP.to_dict()
  del saved["algo"]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(ValueError, match="algo: saved 'qsm' != requested 'sac'"):
    train(dataclasses.replace(TINY_LOOP, algo="sac"),
          RunOptions(run_dir=str(tmp_path), resume=True), log=lambda s: None)


def test_a_rerun_of_the_same_settings_reuses_the_traced_programs(monkeypatch):
  """runner._programs: the same settings (total_steps, eval_every, seed and the numeric
  hyperparameters aside) give the same jitted functions, so a resume or a second
  train() in the process does not trace again; any other setting, or another
  make_trainer, builds its own."""
  from qsm_jax import runner  # pylint: disable=import-outside-toplevel
  from qsm_jax.parallel import DeviceLayout  # pylint: disable=import-outside-toplevel
  layout = DeviceLayout.create(1)
  first = runner._programs(TINY_LOOP, layout)
  assert runner._programs(dataclasses.replace(TINY_LOOP, total_steps=400, eval_every=80,
                                              seed=3, hparams=QSMHyperparams(M_q=5.0)),
                          layout) is first
  wider = runner._programs(dataclasses.replace(
      TINY_LOOP, qsm=dataclasses.replace(TINY_LOOP.qsm, actor_hidden=(32, 32))), layout)
  assert wider.chunk is not first.chunk
  monkeypatch.setattr(runner, "make_trainer", lambda *args: make_trainer(*args))
  assert runner._programs(TINY_LOOP, layout).chunk is not first.chunk
  for i in range(8):  # the oldest are dropped past 8
    runner._programs(dataclasses.replace(TINY_LOOP, batch_size=17 + i), layout)
  monkeypatch.undo()
  assert runner._programs(TINY_LOOP, layout) is not first
