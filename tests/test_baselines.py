"""The SAC and TD3 baselines: their maths by hand, the shared update contract, learning."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax as q
from conftest import TINY, random_batch
from qsm_jax.algorithms import act, get_algorithm
from qsm_jax.sac import tanh_gaussian

BASELINES = ("sac", "td3")


def _differ(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_tanh_gaussian_log_density_by_hand():
  # a = tanh(u), u = m + s * n: log p(a) = log N(u; m, s) - log(1 - tanh(u)^2), per dim.
  mean, log_std = jnp.array([[0.3, -1.2]]), jnp.array([[-0.5, 0.4]])
  noise = jnp.array([[1.1, -0.7]])
  action, logp = tanh_gaussian(mean, log_std, noise)
  u = np.array([0.3 + np.exp(-0.5) * 1.1, -1.2 + np.exp(0.4) * -0.7])
  gauss = -0.5 * np.array([1.1, -0.7]) ** 2 - np.array([-0.5, 0.4]) - 0.5 * np.log(2 * np.pi)
  expected = np.sum(gauss - np.log(1 - np.tanh(u) ** 2))
  np.testing.assert_allclose(action[0], np.tanh(u), rtol=1e-6)
  np.testing.assert_allclose(logp[0], expected, rtol=1e-5)
  # Stable where 1 - tanh(u)^2 underflows in float32 (u = 20): log(1 - tanh^2) ~ log 4 - 2u.
  _, far = tanh_gaussian(jnp.array([[20.0]]), jnp.array([[0.0]]), jnp.array([[0.0]]))
  np.testing.assert_allclose(far[0], -0.5 * np.log(2 * np.pi) - (np.log(4.0) - 40.0), rtol=1e-5)


def _sac_with_log_std(log_std):
  """A SAC state whose actor outputs mean 0 and the given log_std for every obs."""
  state = q.init_sac(jax.random.PRNGKey(0), 3, 2, TINY)
  params = jax.tree.map(jnp.zeros_like, state.actor_params)
  head = params["params"]["MLP_0"]["Dense_2"]
  head["bias"] = head["bias"].at[2:].set(log_std)
  return state.replace(actor_params=params)


@pytest.mark.parametrize("log_std, direction", [(0.0, -1), (-6.0, +1)])
def test_sac_alpha_moves_toward_the_target_entropy(log_std, direction):
  # Target entropy -act_dim = -2. log_std 0 gives entropy ~ 2 * 0.87 > -2: alpha falls.
  # log_std -6 gives entropy ~ 2 * (1.42 - 6) = -9.2 < -2: alpha rises.
  state = _sac_with_log_std(log_std)
  new, metrics = q.sac_update(state, random_batch(jax.random.PRNGKey(1), 64, 3, 2),
                              jax.random.PRNGKey(2))
  # Entropy of tanh(N(0, s^2)) per dim: H(N) + E log(1 - tanh(u)^2), the latter by Monte
  # Carlo; the update estimates it from 64 samples, hence the tolerance.
  u = np.exp(log_std) * np.random.default_rng(0).standard_normal(1_000_000)
  expected = 2 * (0.5 * np.log(2 * np.pi * np.e) + log_std + np.mean(np.log1p(-np.tanh(u) ** 2)))
  assert abs(float(metrics["entropy"]) - expected) < 0.6
  assert float(metrics["alpha"]) == 1.0  # the alpha the update used: the initial one
  # Adam's first step moves log_alpha by lr against the gradient's sign.
  np.testing.assert_allclose(float(new.log_alpha), direction * 3e-4, rtol=1e-3)


def test_td3_update_pair_is_two_updates_and_skips_the_actor_under_vmap():
  """td3_update_pair == td3_update twice (the loop's path for an even number of updates);
  under vmap over seeds the pair's program holds one actor step where two cond-ed
  updates hold two (lax.cond becomes a select)."""
  from qsm_jax.td3 import td3_update_pair  # pylint: disable=import-outside-toplevel
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  states = jax.vmap(lambda k: q.init_td3(k, 3, 2, TINY, q.QSMHyperparams(tau=0.5)))(keys)
  batches = jax.vmap(lambda k: jax.vmap(lambda kk: random_batch(kk, 32, 3, 2))(
      jax.random.split(k, 2)))(keys)   # (seeds, 2, 32, ...)
  update_keys = jax.vmap(lambda k: jax.random.split(k, 2))(jax.random.split(keys[0], 3))

  def twice(state, batch, key):
    state, m1 = q.td3_update(state, jax.tree.map(lambda x: x[0], batch), key[0])
    state, m2 = q.td3_update(state, jax.tree.map(lambda x: x[1], batch), key[1])
    return state, (m1, m2)

  single, (m1, m2) = jax.jit(jax.vmap(twice))(states, batches, update_keys)
  paired, pm = jax.jit(jax.vmap(td3_update_pair))(states, batches, update_keys)
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(paired)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(pm["critic_loss"], (m1["critic_loss"] + m2["critic_loss"]) / 2,
                             rtol=1e-6)
  np.testing.assert_allclose(pm["actor_grad_norm"], m1["actor_grad_norm"], rtol=1e-6)
  assert np.all(pm["actor_grad_norm"] > 0) and np.all(m2["actor_grad_norm"] == 0)

  def flops(fn):  # XLA's count for the compiled, vmapped program
    cost = jax.jit(jax.vmap(fn)).lower(states, batches, update_keys).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]

  # The critic steps and targets are the same work; the pair saves one actor step.
  assert flops(td3_update_pair) < 0.9 * flops(twice)


def test_td3_actor_and_targets_move_every_second_update():
  state = q.init_td3(jax.random.PRNGKey(0), 3, 2, TINY, q.QSMHyperparams(tau=0.5))
  batch = random_batch(jax.random.PRNGKey(1), 32, 3, 2)
  s1, _ = q.td3_update(state, batch, jax.random.PRNGKey(2))   # step 0: actor step
  s2, m2 = q.td3_update(s1, batch, jax.random.PRNGKey(3))     # step 1: critics only
  assert _differ(state.actor_params, s1.actor_params)
  assert _differ(state.target_actor_params, s1.target_actor_params)
  assert _differ(state.target_critic_params, s1.target_critic_params)
  assert not _differ(s1.actor_params, s2.actor_params)
  assert not _differ(s1.target_actor_params, s2.target_actor_params)
  assert not _differ(s1.target_critic_params, s2.target_critic_params)
  assert _differ(s1.critic_params, s2.critic_params)
  assert float(m2["actor_grad_norm"]) == 0.0
  # Polyak with tau 0.5 on the step-0 update: target = (new + old) / 2.
  for new, old, target in zip(jax.tree.leaves(s1.actor_params),
                              jax.tree.leaves(state.actor_params),
                              jax.tree.leaves(s1.target_actor_params)):
    np.testing.assert_allclose(target, 0.5 * (new + old), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", BASELINES)
def test_act_explores_only_when_asked(name):
  alg = get_algorithm(name)
  state = alg.init(jax.random.PRNGKey(0), 3, 2, TINY, q.QSMHyperparams())
  obs = jax.random.normal(jax.random.PRNGKey(1), (128, 3))
  greedy = [act(state, obs, jax.random.PRNGKey(k)) for k in (2, 3)]
  explored = [act(state, obs, jax.random.PRNGKey(k), explore=True) for k in (2, 3)]
  np.testing.assert_array_equal(greedy[0], greedy[1])  # deterministic without exploring
  assert not np.allclose(explored[0], explored[1])
  for a in (*greedy, *explored):
    assert a.shape == (128, 2) and float(jnp.max(jnp.abs(a))) <= 1.0
  with pytest.raises(ValueError, match="temperature is a setting of QSM's sampler"):
    act(state, obs, jax.random.PRNGKey(2), temperature=0.5)


@pytest.mark.parametrize("name", BASELINES)
def test_axis_name_update_equals_one_big_batch(name):
  # The same key on every shard: random draws are made for the global batch, gradients
  # are averaged, so 4 shards of 8 compute the update of the whole batch of 32.
  alg = get_algorithm(name)
  state = alg.init(jax.random.PRNGKey(0), 3, 2, TINY, q.QSMHyperparams())
  batch = random_batch(jax.random.PRNGKey(1), 32, 3, 2)
  full, full_m = alg.update(state, batch, jax.random.PRNGKey(2))
  shards = jax.tree.map(lambda x: x.reshape(4, 8, *x.shape[1:]), batch)
  sharded, sharded_m = jax.vmap(
      lambda b: alg.update(state, b, jax.random.PRNGKey(2), axis_name="devices"),
      axis_name="devices")(shards)
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(b, np.broadcast_to(a, b.shape), rtol=2e-4, atol=1e-6)
  for key in ("critic_loss", "actor_loss", "critic_grad_norm", "actor_grad_norm"):
    np.testing.assert_allclose(sharded_m[key], np.broadcast_to(full_m[key], (4,)), rtol=1e-4)


# Measured (seed 0): sac [36, 109, 95] at 2-4k env steps; td3 7 (its saturated initial
# actor) up to 5k, then 19, 37, 48 at 6-8k. Untrained QSM scores about 15.
@pytest.mark.slow
@pytest.mark.optimized
@pytest.mark.parametrize("name, total_steps, threshold", [("sac", 4000, 50), ("td3", 8000, 30)])
def test_baseline_learns_inverted_pendulum_and_loads_like_qsm(name, total_steps, threshold,
                                                               tmp_path):
  """The same loop and settings as QSM's learning test: far above the untrained policy.
  Then the trained run goes through load_policy (and evaluate.py) as a QSM run does."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from qsm_jax.runner import RunOptions, train  # pylint: disable=import-outside-toplevel
  from qsm_jax.config import TrainConfig  # pylint: disable=import-outside-toplevel
  from test_loading import ROOT  # pylint: disable=import-outside-toplevel
  cfg = TrainConfig(algo=name, env="inverted_pendulum", num_envs=4, num_eval_envs=8,
                    total_steps=total_steps, warmup_steps=1000, batch_size=256,
                    buffer_size=50_000, log_every=1000, eval_every=1000, seed=0,
                    qsm=q.QSMConfig(actor_hidden=(64, 64), critic_hidden=(64, 64)))
  run_dir = tmp_path / name
  result = train(cfg, RunOptions(run_dir=str(run_dir), checkpoint_every=0, write_plot=False),
                 log=lambda s: None)
  evals = [row["eval_return_mean"] for row in result.rows]
  print(f"{name} inverted_pendulum eval return during training: {evals}")
  assert type(result.train_state.agent).__name__ == f"{name.upper()}State"
  assert max(evals[-2:]) > threshold

  agent = jax.tree.map(lambda x: x[0], result.train_state.agent)
  obs = np.linspace(-0.5, 0.5, 20, dtype=np.float32).reshape(5, 4)
  key = jax.random.PRNGKey(7)
  for explore in (False, True):
    policy = q.load_policy(str(run_dir), explore=explore)
    assert type(policy.agent) is type(agent) and policy.config.algo == name
    np.testing.assert_allclose(policy(obs, key), act(agent, obs, key, explore=explore),
                               atol=1e-6)
  with pytest.raises(ValueError, match="temperature is a setting of QSM's sampler"):
    q.load_policy(str(run_dir), temperature=0.0)
  if name == "sac":  # the script end to end, once (a subprocess costs ~15 s)
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "evaluate.py"),
                          f"--run_dir={run_dir}", "--episodes=4"], capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| SAC | inverted_pendulum" in out.stdout and "no exploration" in out.stdout
    assert "temperature" not in out.stdout


def test_unknown_algorithm_is_refused():
  from qsm_jax.config import TrainConfig  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match="--algo: unknown algorithm 'ppo'; choose one of "
                                       "qsm, sac, td3"):
    dataclasses.replace(TrainConfig(), algo="ppo").validate()
  with pytest.raises(ValueError, match="unknown algorithm 'ppo'"):
    get_algorithm("ppo")
