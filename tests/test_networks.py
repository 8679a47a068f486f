"""The default networks' speed-ups compute the textbook functions: one-exp mish, the step table."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax as q
from qsm_jax.networks import ConcatDense, mish


def textbook_mish(x):
  """float64: x tanh(softplus(x)) and its derivative tanh(sp) + x sech^2(sp) sigmoid(x)."""
  x = np.asarray(x, np.float64)
  sp = np.logaddexp(x, 0.0)
  th = np.tanh(sp)
  return x * th, th + x * (1.0 - th**2) / (1.0 + np.exp(-x))


def test_mish_by_hand_and_against_the_textbook_form():
  # Hand values: mish(1) = tanh(log(1 + e)), mish(-1) = -tanh(log(1 + 1/e)).
  np.testing.assert_allclose(mish(jnp.array([0.0, 1.0, -1.0, 50.0])),
                             [0.0, 0.8650983882673103, -0.3034014613526569, 50.0], rtol=1e-6)
  x = jnp.concatenate([jnp.linspace(-30.0, 30.0, 60001), jnp.array([19.99, 20.0, 20.01])])
  value, slope = textbook_mish(x)
  np.testing.assert_allclose(mish(x), value, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jax.vmap(jax.grad(mish))(x), slope, rtol=1e-4, atol=1e-7)


def test_mish_stays_finite_where_exp_overflows():
  x = jnp.array([89.0, 1e4, 1e30, -89.0, -1e4, -1e30])
  y, g = mish(x), jax.vmap(jax.grad(mish))(x)
  assert np.all(np.isfinite(y)) and np.all(np.isfinite(g))
  np.testing.assert_allclose(y[:3], x[:3])  # mish(x) = x for large x
  np.testing.assert_allclose(g, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], atol=1e-30)
  np.testing.assert_allclose(y[3:], 0.0, atol=1e-30)


def test_concat_dense_is_dense_on_the_concatenation():
  x, extra = jax.random.normal(jax.random.PRNGKey(0), (6, 3)), jax.random.normal(
      jax.random.PRNGKey(1), (6, 2))
  params = ConcatDense(4).init(jax.random.PRNGKey(2), x, extra)
  dense = nn.Dense(4, kernel_init=nn.initializers.xavier_uniform())
  # Same parameter tree and the same initial values as a Dense on 5 inputs.
  dense_params = dense.init(jax.random.PRNGKey(2), jnp.concatenate([x, extra], -1))
  assert jax.tree.structure(params) == jax.tree.structure(dense_params)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(dense_params)):
    np.testing.assert_array_equal(a, b)
  params = jax.tree.map(lambda p: p + 0.1, params)  # a nonzero bias too
  want = dense.apply(params, jnp.concatenate([x, extra], -1))
  np.testing.assert_allclose(ConcatDense(4).apply(params, x, extra), want, rtol=1e-6, atol=1e-7)
  # Shared rows: 2 distinct extras, picked per row.
  rows = jnp.array([1, 0, 0, 1, 1, 0])
  table = extra[:2]
  want = dense.apply(params, jnp.concatenate([x, table[rows]], -1))
  np.testing.assert_allclose(ConcatDense(4).apply(params, x, table, rows), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("hidden", [(16, 16), (32,)])
def test_noise_model_step_table_is_the_per_row_model(hidden):
  """num_steps=T: same parameters (init included), same outputs and gradients at every step."""
  T, B, O, A = 5, 40, 4, 3
  per_row = q.NoiseModel(A, hidden=hidden, time_hidden=(8, 8), fourier_size=6)
  table = per_row.clone(num_steps=T)
  obs = jax.random.normal(jax.random.PRNGKey(1), (B, O))
  x = jax.random.normal(jax.random.PRNGKey(2), (B, A))
  t = (jnp.arange(B) % T).astype(jnp.float32)[:, None][::-1]  # every step, unordered
  params = per_row.init(jax.random.PRNGKey(0), obs[:1], x[:1], t[:1])
  for a, b in zip(jax.tree.leaves(params),
                  jax.tree.leaves(table.init(jax.random.PRNGKey(0), obs[:1], x[:1], t[:1]))):
    np.testing.assert_array_equal(a, b)
  params = jax.tree.map(  # move every parameter, biases and Fourier kernel included
      lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(3), p.shape), params)
  want = per_row.apply(params, obs, x, t)
  np.testing.assert_allclose(table.apply(params, obs, x, t), want, rtol=1e-5, atol=1e-6)
  # The time input matters (so the check above compares something).
  assert float(jnp.max(jnp.abs(per_row.apply(params, obs, x, t[::-1]) - want))) > 1e-2
  loss = lambda m: jax.grad(lambda p: jnp.sum(m.apply(p, obs, x, t) ** 2))(params)
  for a, b in zip(jax.tree.leaves(loss(per_row)), jax.tree.leaves(loss(table))):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
  # A step outside [0, T) cannot silently pick a wrong row.
  bad = table.apply(params, obs[:3], x[:3], jnp.array([[float(T)], [-1.0], [1.0]]))
  assert np.all(np.isnan(bad[:2])) and np.all(np.isfinite(bad[2]))


def test_default_networks_use_the_step_table():
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=q.QSMConfig(T=7))
  assert state.noise_model.num_steps == 7


def test_layer_norm_critic_ignores_the_scale_of_its_first_layer():
  # LayerNorm after a Dense makes the output invariant to scaling that Dense's kernel and
  # bias by any c > 0 (the normalised features are the same); without it, a ReLU MLP's
  # output scales with c. Defaults keep the paper's critic: no LayerNorm parameters.
  obs, act = jnp.linspace(-1, 1, 12).reshape(4, 3), jnp.linspace(-0.5, 0.5, 8).reshape(4, 2)
  plain = q.Critic(hidden=(8, 8))
  assert not any("LayerNorm" in k for k in plain.init(jax.random.PRNGKey(0), obs, act)["params"]["MLP_0"])
  for layer_norm in (True, False):
    critic = q.Critic(hidden=(8, 8), layer_norm=layer_norm)
    params = critic.init(jax.random.PRNGKey(0), obs, act)
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 10.0 if "Dense_0" in jax.tree_util.keystr(path) else x, params)
    base, out = critic.apply(params, obs, act), critic.apply(scaled, obs, act)
    if layer_norm:
      assert set(params["params"]["MLP_0"]) >= {"LayerNorm_0", "LayerNorm_1"}
      np.testing.assert_allclose(out, base, rtol=1e-4, atol=1e-5)
    else:
      assert not np.allclose(out, base, rtol=1e-2)
  cfg = q.QSMConfig(actor_hidden=(8,), time_hidden=(4,), fourier_size=4, critic_hidden=(8,),
                    critic_layer_norm=True)
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=cfg)
  assert "LayerNorm_0" in state.critic_params["params"]["MLP_0"]
