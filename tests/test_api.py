"""The public API as a user of another JAX codebase would use it."""
import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax as q
from conftest import TINY, random_batch
from toy_modules import ConstantNoise, LinearCritic

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _leaves_differ(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_readme_example_runs():
  text = (ROOT / "README.md").read_text()
  blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "qsm_update(" in b]
  assert blocks, "README.md must hold a python example of qsm_update"
  namespace = {}
  exec(compile(blocks[0], "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert np.isfinite(float(namespace["metrics"]["critic_loss"]))
  assert namespace["actions"].shape == (256, 4)


def test_vmap_over_seeds_gives_different_agents():
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  states = jax.vmap(lambda k: q.init_state(k, 3, 2, config=TINY))(keys)
  batch = random_batch(jax.random.PRNGKey(1), 32, 3, 2)
  new_states, metrics = jax.vmap(q.qsm_update, in_axes=(0, None, 0))(states, batch, keys)
  assert metrics["actor_loss"].shape == (4,)
  losses = np.asarray(metrics["actor_loss"])
  assert len(np.unique(losses)) == 4
  w = np.asarray(jax.tree.leaves(new_states.actor_params)[0])
  assert all(not np.array_equal(w[0], w[i]) for i in range(1, 4))


def test_vmap_sweep_over_hyperparameter_leaves():
  m_qs = jnp.array([1.0, 10.0, 100.0])
  base = q.init_state(jax.random.PRNGKey(0), 3, 2, config=TINY)
  states = jax.vmap(lambda m: base.replace(hparams=base.hparams.replace(M_q=m)))(m_qs)
  batch = random_batch(jax.random.PRNGKey(1), 32, 3, 2)
  _, metrics = jax.vmap(q.qsm_update, in_axes=(0, None, None))(states, batch,
                                                              jax.random.PRNGKey(2))
  # Same critic step for every M_q; the score target scales with M_q.
  np.testing.assert_allclose(metrics["critic_loss"], metrics["critic_loss"][0], rtol=1e-6)
  np.testing.assert_allclose(metrics["score_target_norm"] / m_qs,
                             metrics["score_target_norm"][0] / m_qs[0], rtol=1e-5)


class UserNoiseModel(nn.Module):
  """A user's own noise model: LayerNorm, GELU, sinusoidal time input."""
  act_dim: int

  @nn.compact
  def __call__(self, obs, x, t):
    h = jnp.concatenate([obs, x, jnp.sin(t), jnp.cos(t)], -1)
    h = nn.gelu(nn.LayerNorm()(nn.Dense(24)(h)))
    return nn.Dense(self.act_dim)(h)


class UserCritic(nn.Module):
  @nn.compact
  def __call__(self, obs, action):
    h = nn.tanh(nn.Dense(16)(jnp.concatenate([obs, action], -1)))
    return nn.Dense(1)(h)[:, 0]


def test_user_defined_modules_train():
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=q.QSMConfig(num_critics=3),
                       hparams=q.QSMHyperparams(critic_lr=3e-3, actor_lr=3e-3),
                       noise_model=UserNoiseModel(2), critic=UserCritic())
  assert jax.tree.leaves(state.critic_params)[0].shape[0] == 3  # stacked ensemble
  # Terminal transitions: the critic step is plain regression onto the reward.
  batch = random_batch(jax.random.PRNGKey(1), 64, 3, 2).replace(mask=jnp.zeros(64))
  first = None
  for i in range(30):
    state, m = q.qsm_update(state, batch, jax.random.PRNGKey(i))
    first = m if first is None else first
  assert float(m["critic_loss"]) < 0.7 * float(first["critic_loss"])
  assert float(m["actor_loss"]) < float(first["actor_loss"])
  actions = q.sample_actions(state, batch.obs, jax.random.PRNGKey(0), explore=True)
  assert actions.shape == (64, 2) and float(jnp.max(jnp.abs(actions))) <= 1.0


def test_bad_modules_and_shapes_are_rejected():
  with pytest.raises(ValueError, match="critic must return"):
    q.init_state(jax.random.PRNGKey(0), 3, 2, config=TINY,
                 critic=type("C", (nn.Module,), {"__call__": nn.compact(
                     lambda self, o, a: nn.Dense(1)(jnp.concatenate([o, a], -1)))})())
  with pytest.raises(ValueError, match="obs_dim"):
    q.init_state(jax.random.PRNGKey(0), 0, 2)
  with pytest.raises(ValueError, match="gamma"):
    q.init_state(jax.random.PRNGKey(0), 3, 2, hparams=q.QSMHyperparams(gamma=1.5))
  with pytest.raises(ValueError, match="beta_schedule"):
    q.QSMConfig(beta_schedule="sigmoid")
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=TINY)
  with pytest.raises(AssertionError):  # chex shape check: obs_dim 4 != 3
    q.qsm_update(state, random_batch(jax.random.PRNGKey(1), 8, 4, 2), jax.random.PRNGKey(2))


def test_compiles_once_across_calls_and_hyperparameter_values():
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=TINY)
  before = q.qsm_update._cache_size()  # pylint: disable=protected-access
  for i in range(3):
    state = state.replace(hparams=state.hparams.replace(M_q=jnp.float32(1.0 + i)))
    # Batch 13: a shape no other test uses, so the first call here must compile once.
    state, _ = q.qsm_update(state, random_batch(jax.random.PRNGKey(i), 13, 3, 2),
                            jax.random.PRNGKey(i))
  assert q.qsm_update._cache_size() == before + 1  # pylint: disable=protected-access


def test_same_seed_same_metrics_different_seed_different():
  def run(seed):
    state = q.init_state(jax.random.PRNGKey(seed), 3, 2, config=TINY)
    batch = random_batch(jax.random.PRNGKey(seed + 100), 32, 3, 2)
    for i in range(3):
      state, m = q.qsm_update(state, batch, jax.random.fold_in(jax.random.PRNGKey(seed), i))
    return state, m

  (s1, m1), (s2, m2), (_, m3) = run(0), run(0), run(1)
  for k in m1:
    assert float(m1[k]) == float(m2[k]), k
  assert not _leaves_differ(s1.actor_params, s2.actor_params)
  assert float(m1["actor_loss"]) != float(m3["actor_loss"])


def test_axis_name_averages_gradients_like_one_big_batch():
  # With a linear critic, a constant noise model and terminal transitions, the update
  # does not depend on the random draws, so 4 shards with pmean equal the full batch.
  hp = q.QSMHyperparams(M_q=2.0)
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, hparams=hp, noise_model=ConstantNoise(2),
                       critic=LinearCritic(2))
  state = state.replace(critic_params=jax.tree.map(
      lambda w: w + jnp.array([[0.5, -1.0], [2.0, 0.3]]), state.critic_params))
  batch = random_batch(jax.random.PRNGKey(1), 32, 3, 2).replace(mask=jnp.zeros(32))
  full, full_m = q.qsm_update(state, batch, jax.random.PRNGKey(2))
  shards = jax.tree.map(lambda x: x.reshape(4, 8, *x.shape[1:]), batch)
  sharded, sharded_m = jax.vmap(
      lambda b: q.qsm_update(state, b, jax.random.PRNGKey(2), axis_name="devices"),
      axis_name="devices")(shards)
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(b, np.broadcast_to(a, b.shape), rtol=1e-5, atol=1e-7)
  # Adam's first step only sees gradient signs, so compare the gradients themselves too.
  for name in ("critic_loss", "critic_grad_norm", "actor_grad_norm"):
    np.testing.assert_allclose(sharded_m[name], full_m[name], rtol=1e-5)
  # Without the axis name each shard steps on its own gradient: the test can fail.
  _, unsynced_m = jax.vmap(lambda b, k: q.qsm_update(state, b, k))(
      shards, jax.random.split(jax.random.PRNGKey(2), 4))
  assert np.ptp(np.asarray(unsynced_m["critic_grad_norm"])) > 1e-3


def test_import_loads_no_simulator_checkpointing_or_plotting():
  """`import qsm_jax` (the update as a library) loads jax, flax, optax and chex only."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  heavy = ("brax", "mujoco", "mujoco_playground", "orbax", "tensorstore", "matplotlib",
           "torch")
  script = ("import importlib.util, sys, tempfile, qsm_jax\n"
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
            "print(qsm_jax.qsm_update.__name__, qsm_jax.TrainConfig().env)\n"
            # A run's TensorBoard writer: tensorboardX without torch, and torch intact.
            "from qsm_jax.metrics import MetricsWriter\n"
            "MetricsWriter(tempfile.mkdtemp(), None).close()\n"
            "print('torch' in sys.modules, 'tensorboardX' in sys.modules)\n"
            "if importlib.util.find_spec('torch'):\n"
            "  import torch; assert torch.zeros(2).sum() == 0\n")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True)
  loaded, names, run_imports = result.stdout.splitlines()[-3:]
  assert loaded == "", f"import qsm_jax loaded {loaded}"
  assert names == "qsm_update inverted_pendulum"
  assert run_imports == "False True"  # tensorboardX would import torch (2-4 s) if installed
