"""Loss math against numbers worked out by hand (2-dim actions, linear critics)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax as q
from qsm_jax import losses, update
from qsm_jax.policy import sample_from_params
from conftest import TINY, random_batch
from toy_modules import ConstantNoise, LinearCritic

# Two linear critics: Q1 = a . (1, 2), Q2 = a . (3, -1).
W = {"params": {"w": jnp.array([[1.0, 2.0], [3.0, -1.0]])}}
OBS = jnp.zeros((2, 1))


def test_critic_target_uses_min_of_targets_and_mask():
  next_action = jnp.ones((2, 2))  # Q1' = 3, Q2' = 2 -> min 2
  y = losses.critic_target(LinearCritic(2), W, reward=jnp.array([1.0, 1.0]),
                           mask=jnp.array([1.0, 0.0]), next_obs=OBS,
                           next_action=next_action, gamma=0.5)
  np.testing.assert_allclose(y, [1.0 + 0.5 * 2.0, 1.0])  # terminal: reward only


def test_critic_loss_and_gradient_by_hand():
  action = jnp.array([[0.0, 1.0], [1.0, 0.0]])  # Q1 = (2, 1), Q2 = (-1, 3)
  target = jnp.array([2.0, 1.0])
  (loss, aux), grads = jax.value_and_grad(losses.critic_loss, has_aux=True)(
      W, LinearCritic(2), OBS, action, target)
  # MSE1 = 0; MSE2 = ((-3)^2 + 2^2) / 2 = 6.5.
  assert float(loss) == pytest.approx(6.5)
  assert float(aux["critic_loss"]) == pytest.approx(3.25)
  # dMSE2/dw2 = 2/B * sum (q - y) a = (-3)(0, 1) + 2(1, 0) = (2, -3); critic 1 has none.
  np.testing.assert_allclose(grads["params"]["w"], [[0.0, 0.0], [2.0, -3.0]])


def test_actor_target_is_minus_Mq_times_mean_critic_gradient():
  noisy = jnp.array([[0.3, -0.2], [0.9, 0.1]])
  g = losses.q_action_gradient(LinearCritic(2), W, OBS, noisy)
  np.testing.assert_allclose(g, [[2.0, 0.5], [2.0, 0.5]])  # mean of (1, 2) and (3, -1)
  noise_params = {"params": {"b": jnp.zeros(2)}}
  loss, eps = losses.actor_loss(noise_params, ConstantNoise(2), OBS, noisy,
                                jnp.array([0, 3]), -2.0 * g)
  # target (-4, -1), prediction 0: mean of (16, 1) = 8.5.
  assert float(loss) == pytest.approx(8.5)


def test_qsm_update_metrics_by_hand():
  hp = q.QSMHyperparams(M_q=2.0, critic_lr=0.0)
  state = q.init_state(jax.random.PRNGKey(0), 1, 2, hparams=hp, noise_model=ConstantNoise(2),
                       critic=LinearCritic(2))
  state = state.replace(critic_params=W, target_critic_params=W)
  batch = q.Batch(obs=OBS, action=jnp.array([[0.0, 1.0], [1.0, 0.0]]),
                  reward=jnp.array([2.0, 1.0]), next_obs=OBS, mask=jnp.zeros(2))
  new_state, m = q.qsm_update(state, batch, jax.random.PRNGKey(1))
  assert float(m["critic_loss"]) == pytest.approx(3.25)  # mask 0: y = r
  assert float(m["target_q_mean"]) == pytest.approx(1.5)
  assert float(m["actor_loss"]) == pytest.approx(8.5)  # at any t: the critic is linear
  assert float(m["grad_q_norm"]) == pytest.approx(np.sqrt(4.25), rel=1e-6)
  assert float(m["score_target_norm"]) == pytest.approx(np.sqrt(17.0), rel=1e-6)
  np.testing.assert_allclose(new_state.critic_params["params"]["w"], W["params"]["w"])
  # Adam's first step moves each parameter by lr against the gradient's sign:
  # d loss / d b = -2 (target - b) / A = (4, 1) > 0, so b decreases by lr.
  np.testing.assert_allclose(new_state.actor_params["params"]["b"], [-3e-4, -3e-4], rtol=1e-3)


@pytest.mark.parametrize("sigma_weight", [False, True])
def test_sigma_weighted_target_by_hand(sigma_weight):
  # One linear-schedule step: beta = 1e-4, so sigma = sqrt(1 - abar) = 0.01 (to float32
  # rounding of 1 - (1 - 1e-4): 1e-4 relative).
  cfg = dataclasses.replace(TINY, T=1, beta_schedule="linear", score_sigma_weight=sigma_weight)
  hp = q.QSMHyperparams(M_q=2.0, critic_lr=0.0)
  state = q.init_state(jax.random.PRNGKey(0), 1, 2, config=cfg, hparams=hp,
                       noise_model=ConstantNoise(2), critic=LinearCritic(2))
  state = state.replace(critic_params=W, target_critic_params=W)
  batch = q.Batch(obs=OBS, action=jnp.array([[0.0, 1.0], [1.0, 0.0]]),
                  reward=jnp.array([2.0, 1.0]), next_obs=OBS, mask=jnp.zeros(2))
  _, m = q.qsm_update(state, batch, jax.random.PRNGKey(1))
  sigma = 0.01 if sigma_weight else 1.0  # off: the paper's target at every step
  # The target of the test above, -2 (2, 0.5), times sigma.
  assert float(m["score_target_norm"]) == pytest.approx(sigma * np.sqrt(17.0), rel=1e-4)
  assert float(m["actor_loss"]) == pytest.approx(sigma**2 * 8.5, rel=1e-3)


def test_target_temperature_sets_the_critic_targets_sampler_only():
  """target_temperature replaces the training temperature in the sampler of a' (T=2: the
  last step adds sqrt(beta) x temperature x z) and nowhere else: acting keeps it."""
  def target_and_action(temperature, target_temperature):
    cfg = dataclasses.replace(TINY, T=2, beta_schedule="linear",
                              target_temperature=target_temperature)
    hp = q.QSMHyperparams(critic_lr=0.0, temperature=temperature)
    state = q.init_state(jax.random.PRNGKey(0), 1, 2, config=cfg, hparams=hp,
                         noise_model=ConstantNoise(2), critic=LinearCritic(2))
    state = state.replace(critic_params=W, target_critic_params=W)
    batch = q.Batch(obs=OBS, action=jnp.zeros((2, 2)), reward=jnp.zeros(2), next_obs=OBS,
                    mask=jnp.ones(2))
    _, m = q.qsm_update(state, batch, jax.random.PRNGKey(1))
    action = q.sample_actions(state, OBS, jax.random.PRNGKey(2), explore=True)
    return float(m["target_q_mean"]), np.asarray(action)

  greedy_target, acting = target_and_action(1.0, 0.0)
  zero_everywhere, _ = target_and_action(0.0, None)
  papers, papers_acting = target_and_action(1.0, None)
  assert greedy_target == pytest.approx(zero_everywhere, abs=1e-6)  # a' as at temperature 0
  assert abs(greedy_target - papers) > 1e-3  # the control: the paper's a' is noisier
  # Equal to the training temperature it is the paper's update (how RESULTS.md reruns
  # the runs made before the presets set 0).
  assert target_and_action(1.0, 1.0)[0] == papers
  np.testing.assert_array_equal(acting, papers_acting)  # acting keeps temperature 1
  for bad in (float("nan"), -1.0, True):  # a bool is no temperature (it was eval_temperature's)
    with pytest.raises(ValueError, match="target_temperature must be a finite number >= 0"):
      dataclasses.replace(TINY, target_temperature=bad)


def test_no_gradient_crosses_between_actor_and_critic():
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=TINY)
  b = random_batch(jax.random.PRNGKey(1), 8, 3, 2)
  t = jnp.arange(8) % TINY.T

  def actor_loss_of_critic(critic_params):
    g = losses.q_action_gradient(state.critic, critic_params, b.obs, b.action)
    return losses.actor_loss(state.actor_params, state.noise_model, b.obs, b.action, t,
                             -50.0 * g)[0]

  def critic_loss_of_actor(actor_params):
    next_a = sample_from_params(state, actor_params, b.next_obs, jax.random.PRNGKey(2), 1.0)
    y = losses.critic_target(state.critic, state.target_critic_params, b.reward, b.mask,
                             b.next_obs, next_a, 0.99)
    return losses.critic_loss(state.critic_params, state.critic, b.obs, b.action, y)[0]

  to_critic = jax.grad(actor_loss_of_critic)(state.critic_params)
  to_actor = jax.grad(critic_loss_of_actor)(state.actor_params)
  assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(to_critic))
  assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(to_actor))
  # ... while each loss does depend on its own parameters.
  own = jax.grad(lambda p: losses.actor_loss(p, state.noise_model, b.obs, b.action, t,
                                             jnp.ones_like(b.action))[0])(state.actor_params)
  assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(own)) > 0.0


def test_target_update_is_polyak_average():
  hp = q.QSMHyperparams(tau=0.3)
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=TINY, hparams=hp)
  # Make target differ from online so the average is visible.
  state = state.replace(target_critic_params=jax.tree.map(jnp.zeros_like, state.critic_params))
  new_state, _ = q.qsm_update(state, random_batch(jax.random.PRNGKey(1), 16, 3, 2),
                              jax.random.PRNGKey(2))
  expected = jax.tree.map(lambda online: 0.3 * online, new_state.critic_params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               new_state.target_critic_params, expected)


def test_actor_lr_follows_cosine_decay():
  import optax
  hp = q.QSMHyperparams(actor_lr=1e-3, actor_lr_decay_steps=4.0)
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=TINY, hparams=hp)
  b = random_batch(jax.random.PRNGKey(1), 8, 3, 2)
  schedule = optax.cosine_decay_schedule(1e-3, 4)
  for step in range(6):
    state, m = q.qsm_update(state, b, jax.random.PRNGKey(step))
    assert float(m["actor_lr"]) == pytest.approx(float(schedule(step)), abs=1e-9)


def _actor_after_updates(score_scale, q_scale, steps=3):
  """Actor parameters after ``steps`` updates with frozen critics whose Q is x q_scale."""
  from qsm_jax.networks import Critic  # pylint: disable=import-outside-toplevel
  from toy_modules import ScaledCritic  # pylint: disable=import-outside-toplevel
  cfg = dataclasses.replace(TINY, score_scale=score_scale)
  hp = q.QSMHyperparams(M_q=1.0, critic_lr=0.0)
  critic = ScaledCritic(Critic(hidden=(32, 32)), q_scale)
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=cfg, hparams=hp, critic=critic)
  batch = random_batch(jax.random.PRNGKey(1), 64, 3, 2)
  for i in range(steps):
    state, metrics = q.qsm_update(state, batch, jax.random.PRNGKey(10 + i))
  return state, metrics


@pytest.mark.parametrize("score_scale", ["batch", "running"])
def test_scale_free_target_ignores_the_scale_of_q(score_scale):
  # Q x100 (rewards in other units): the scale-free actor update is the same to float
  # rounding (the control, the paper's fixed M_q, is the next test).
  base, m1 = _actor_after_updates(score_scale, 1.0)
  scaled, m100 = _actor_after_updates(score_scale, 100.0)
  assert float(m100["score_scale"]) == pytest.approx(100 * float(m1["score_scale"]), rel=1e-4)
  assert float(m100["actor_loss"]) == pytest.approx(float(m1["actor_loss"]), rel=1e-4)
  for a, b in zip(jax.tree.leaves(base.actor_params), jax.tree.leaves(scaled.actor_params)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_fixed_target_follows_the_scale_of_q():
  # The control of the test above: the paper's fixed M_q regresses onto a 100x larger
  # target, and the actor moves elsewhere.
  fixed, f1 = _actor_after_updates("fixed", 1.0)
  fixed100, f100 = _actor_after_updates("fixed", 100.0)
  assert float(f1["score_scale"]) == float(f100["score_scale"]) == 1.0
  assert float(f100["actor_loss"]) > 100 * float(f1["actor_loss"])
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(fixed.actor_params), jax.tree.leaves(fixed100.actor_params)))
  assert moved > 1e-4


def test_score_scales_by_hand():
  # Linear critics: grad_a Q = (2, 0.5) for every row, so mean |grad_a Q| = 1.25.
  g = jnp.array([[2.0, 0.5], [2.0, 0.5]])
  ident = lambda x: x
  for name in ("fixed", "batch", "running"):
    cfg = dataclasses.replace(TINY, score_scale=name, score_norm_rate=0.1)
    scale, norm = update.q_score_scale(cfg, jnp.float32(0.0), jnp.int32(0), g, ident)
    # running: first step 0.1 * 1.25, divided by Adam's correction 1 - 0.9 = 0.1.
    assert float(scale) == pytest.approx(1.0 if name == "fixed" else 1.25, rel=1e-6)
    assert float(norm) == pytest.approx(0.125 if name == "running" else 0.0, rel=1e-6)
  # Second step with a batch mean of 2.5: EMA 0.9 * 0.125 + 0.1 * 2.5 = 0.3625, corrected
  # by 1 - 0.81 = 0.19 -> 1.9079 (between the two batch means, nearer the newer).
  cfg = dataclasses.replace(TINY, score_scale="running", score_norm_rate=0.1)
  scale, norm = update.q_score_scale(cfg, jnp.float32(0.125), jnp.int32(1), 2 * g, ident)
  assert float(norm) == pytest.approx(0.3625, rel=1e-6)
  assert float(scale) == pytest.approx(0.3625 / 0.19, rel=1e-6)
  # A zero gradient gives a zero target, not NaN.
  scale, _ = update.q_score_scale(cfg, jnp.float32(0.0), jnp.int32(0), 0 * g, ident)
  assert float(scale) > 0 and np.isfinite(float(-1.0 * 0.0 / scale))


def test_running_score_norm_is_carried_in_the_state():
  cfg = dataclasses.replace(TINY, score_scale="running")
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=cfg)
  assert float(state.score_norm) == 0.0
  batch = random_batch(jax.random.PRNGKey(1), 32, 3, 2)
  state, m = q.qsm_update(state, batch, jax.random.PRNGKey(2))
  # After one update: norm = rate * batch mean, and the divisor is that mean.
  assert float(state.score_norm) == pytest.approx(
      cfg.score_norm_rate * float(m["score_scale"]), rel=1e-5)
  fixed = q.init_state(jax.random.PRNGKey(0), 3, 2, config=TINY)
  fixed, _ = q.qsm_update(fixed, batch, jax.random.PRNGKey(2))
  assert float(fixed.score_norm) == 0.0  # untouched unless score_scale='running'


def test_critic_reward_divisor_by_hand():
  # |r| = (1, 3): batch mean 2. 'running' with rate 0.1: the average is 0.2 after one
  # step, and Adam's correction (1 - 0.9) makes the divisor exactly the batch mean.
  r = jnp.array([1.0, -3.0])
  ident = lambda x: x
  none = dataclasses.replace(TINY, critic_reward_norm="none", score_norm_rate=0.1)
  divisor, norm = update.critic_reward_divisor(none, jnp.float32(0.0), jnp.int32(0), r, ident)
  assert (float(divisor), float(norm)) == (1.0, 0.0)
  cfg = dataclasses.replace(none, critic_reward_norm="running")
  divisor, norm = update.critic_reward_divisor(cfg, jnp.float32(0.0), jnp.int32(0), r, ident)
  assert float(divisor) == pytest.approx(2.0, rel=1e-6)
  assert float(norm) == pytest.approx(0.2, rel=1e-6)
  # Then a batch mean of 4: 0.9 * 0.2 + 0.1 * 4 = 0.58, over 1 - 0.81 = 0.19.
  divisor, norm = update.critic_reward_divisor(cfg, norm, jnp.int32(1), 2 * r, ident)
  assert float(norm) == pytest.approx(0.58, rel=1e-6)
  assert float(divisor) == pytest.approx(0.58 / 0.19, rel=1e-6)


def test_shrink_divides_only_by_an_average_above_one():
  # The same average as 'running' (rate 0.1, first step: the batch mean exactly), but the
  # divisor is max(1, it): mean |r| 2 divides by 2, mean |r| 0.5 by exactly 1.
  ident = lambda x: x
  cfg = dataclasses.replace(TINY, critic_reward_norm="shrink", score_norm_rate=0.1)
  divisor, norm = update.critic_reward_divisor(cfg, jnp.float32(0.0), jnp.int32(0),
                                               jnp.array([1.0, -3.0]), ident)
  assert float(divisor) == pytest.approx(2.0, rel=1e-6)
  assert float(norm) == pytest.approx(0.2, rel=1e-6)
  divisor, norm = update.critic_reward_divisor(cfg, jnp.float32(0.0), jnp.int32(0),
                                               jnp.array([0.25, -0.75]), ident)
  assert float(divisor) == 1.0
  assert float(norm) == pytest.approx(0.05, rel=1e-6)  # still tracked


def _learned_leaves(state):
  return jax.tree.leaves((state.actor_params, state.critic_params, state.target_critic_params))


def _after_updates_with_rewards(critic_reward_norm, reward_scale, steps=3, bounded=False):
  cfg = dataclasses.replace(TINY, score_scale="running", critic_reward_norm=critic_reward_norm)
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=cfg,
                       hparams=q.QSMHyperparams(M_q=1.0))
  batch = random_batch(jax.random.PRNGKey(1), 64, 3, 2)
  reward = jnp.sign(batch.reward) if bounded else batch.reward  # bounded: every |r| = 1
  batch = batch.replace(reward=reward * reward_scale)
  for i in range(steps):
    state, metrics = q.qsm_update(state, batch, jax.random.PRNGKey(10 + i))
  return state, metrics


def test_running_reward_norm_makes_the_whole_update_free_of_the_reward_scale():
  # Rewards x100: with the critic's rewards and the actor's target both normalised, the
  # critics, their targets and the actor move exactly as at x1 (to float rounding);
  # with the paper's critic ('none') the critics fit 100x larger targets (the control).
  base, m1 = _after_updates_with_rewards("running", 1.0)
  scaled, m100 = _after_updates_with_rewards("running", 100.0)
  assert float(m100["reward_divisor"]) == pytest.approx(100 * float(m1["reward_divisor"]),
                                                        rel=1e-5)
  assert float(m100["critic_loss"]) == pytest.approx(float(m1["critic_loss"]), rel=1e-4)
  for a, b in zip(_learned_leaves(base), _learned_leaves(scaled)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  plain, p1 = _after_updates_with_rewards("none", 1.0)
  plain100, p100 = _after_updates_with_rewards("none", 100.0)
  assert float(p1["reward_divisor"]) == float(p100["reward_divisor"]) == 1.0
  assert float(plain.reward_norm) == 0.0  # untouched unless 'running'
  assert float(p100["critic_loss"]) > 100 * float(p1["critic_loss"])
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree.leaves(plain.critic_params), jax.tree.leaves(plain100.critic_params)))
  assert moved > 1e-4


def test_shrink_is_the_papers_critic_for_small_rewards_and_running_for_large():
  # |r| <= 1 (DMC's rewards are in [0, 1]): the update is bit for bit the paper's critic
  # ('none'); rewards x100: bit for bit 'running', so free of the scale above 1.
  for scale, same_as in ((0.3, "none"), (100.0, "running")):
    shrink, m = _after_updates_with_rewards("shrink", scale, bounded=True)
    other, _ = _after_updates_with_rewards(same_as, scale, bounded=True)
    for a, b in zip(_learned_leaves(shrink), _learned_leaves(other)):
      np.testing.assert_array_equal(a, b)
    assert (float(m["reward_divisor"]) == 1.0) == (same_as == "none")
  # The control: at x100 'none' moves elsewhere, so the equalities above can fail.
  plain, _ = _after_updates_with_rewards("none", 100.0, bounded=True)
  assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(_learned_leaves(plain),
                                                         _learned_leaves(shrink))) > 1e-4


def test_bad_score_settings_are_refused():
  with pytest.raises(ValueError, match="score_scale"):
    dataclasses.replace(TINY, score_scale="adaptive")
  with pytest.raises(ValueError, match="score_critic"):
    dataclasses.replace(TINY, score_critic="both")
  with pytest.raises(ValueError, match="score_norm_rate"):
    dataclasses.replace(TINY, score_norm_rate=0.0)
  with pytest.raises(ValueError, match="critic_reward_norm"):
    dataclasses.replace(TINY, critic_reward_norm="popart")
