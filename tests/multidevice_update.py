"""Run with XLA_FLAGS=--xla_force_host_platform_device_count=4 (tests/test_parallel.py does).

One qsm_update with the default networks on a global batch split over 4 devices (pmap
and shard_map) against one device with the whole batch. Prints JSON with the max
differences; the 'running_*' entries repeat the pmap check with score_scale='running',
critic_reward_norm='running' and the spread controller (spread_target, its extra sampler
draws made for the global batch), whose moving averages of |grad_a Q| and |r| and factor
on M_q must be the global batch's on every device.
"""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

import qsm_jax as q

assert jax.device_count() == 4, jax.devices()
cfg = q.QSMConfig(actor_hidden=(32, 32), time_hidden=(16, 16), fourier_size=8,
                  critic_hidden=(32, 32))
state = q.init_state(jax.random.PRNGKey(0), 5, 3, config=cfg)
k = jax.random.split(jax.random.PRNGKey(1), 5)
B = 64
batch = q.Batch(obs=jax.random.normal(k[0], (B, 5)),
                action=jax.random.uniform(k[1], (B, 3), minval=-1, maxval=1),
                reward=jax.random.normal(k[2], (B,)), next_obs=jax.random.normal(k[3], (B, 5)),
                mask=jnp.ones(B))
key = jax.random.PRNGKey(7)


def two_steps(state, batch, axis_name=None):
  for i in range(2):  # two steps: Adam's first step only sees gradient signs
    state, metrics = q.qsm_update(state, batch, jax.random.fold_in(key, i), axis_name=axis_name)
  return state, metrics


single, single_m = two_steps(state, batch)
shards = jax.tree.map(lambda x: x.reshape(4, B // 4, *x.shape[1:]), batch)
replicated = jax.tree.map(lambda x: jnp.stack([x] * 4), state)
pmapped, pmapped_m = jax.pmap(lambda s, b: two_steps(s, b, "devices"), axis_name="devices")(
    replicated, shards)

mesh = Mesh(np.array(jax.devices()), ("devices",))
smapped, smapped_m = jax.jit(jax.shard_map(
    lambda s, b: two_steps(s, b, "devices"), mesh=mesh,
    in_specs=(P(), P("devices")), out_specs=(P(), P()), check_vma=False))(state, batch)


def max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


params = lambda s: (s.actor_params, s.critic_params, s.target_critic_params, s.score_norm,
                    s.reward_norm, s.log_m_q_gain)

running = q.init_state(jax.random.PRNGKey(0), 5, 3,
                       config=dataclasses.replace(cfg, score_scale="running",
                                                  critic_reward_norm="running",
                                                  spread_target=0.05, spread_rate=0.1))
running_single, _ = two_steps(running, batch)
running_pmapped, _ = jax.pmap(lambda s, b: two_steps(s, b, "devices"), axis_name="devices")(
    jax.tree.map(lambda x: jnp.stack([x] * 4), running), shards)
running_norms = np.asarray(running_pmapped.score_norm)
reward_norms = np.asarray(running_pmapped.reward_norm)
gains = np.asarray(running_pmapped.log_m_q_gain)
per_device = [jax.tree.map(lambda x: x[i], params(pmapped)) for i in range(4)]
print(json.dumps({
    "pmap_vs_single": max_diff(jax.tree.map(lambda x: x[0], params(pmapped)), params(single)),
    "shard_map_vs_single": max_diff(params(smapped), params(single)),
    "devices_identical": all(max_diff(per_device[0], p) == 0.0 for p in per_device[1:]),
    "critic_loss": [float(single_m["critic_loss"]), float(pmapped_m["critic_loss"][0]),
                    float(smapped_m["critic_loss"])],
    "param_change": max_diff(params(single), params(state)),
    "running_pmap_vs_single": max_diff(jax.tree.map(lambda x: x[0], params(running_pmapped)),
                                       params(running_single)),
    "running_norm": [float(running_single.score_norm)] + running_norms.tolist(),
    "reward_norm": [float(running_single.reward_norm)] + reward_norms.tolist(),
    "log_m_q_gain": [float(running_single.log_m_q_gain)] + gains.tolist(),
}))
