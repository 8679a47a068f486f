"""Data parallelism: qsm_update on 4 simulated CPU devices, and training runs on 2 devices
and on 2 processes (subprocesses set XLA_FLAGS or join through jax.distributed)."""
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qsm_jax.parallel import map_seeds

HERE = pathlib.Path(__file__).resolve().parent


def test_one_seed_runs_unbatched_and_several_are_vmapped():
  """map_seeds gives vmap's values for 1 and for 3 seeds; one seed calls the function
  directly, so a lax.cond stays a branch (vmap turns it into a select that runs both,
  as it does for 3 seeds)."""
  f = lambda x, y: {"out": jax.lax.cond(x[0] > 0, lambda: x * 2.0, lambda: -x) + y}
  for n in (1, 3):
    x = jnp.arange(2 * n, dtype=jnp.float32).reshape(n, 2) - 1.0  # rows [-1, 0], [1, 2], ...
    y = jnp.arange(n, dtype=jnp.float32)[:, None]
    got = jax.jit(map_seeds(f))(x, y)["out"]
    assert got.shape == (n, 2)
    np.testing.assert_array_equal(got, jax.vmap(f)(x, y)["out"])
    primitives = {e.primitive.name for e in jax.make_jaxpr(map_seeds(f))(x, y).jaxpr.eqns}
    assert ("cond" in primitives) == (n == 1), primitives


def test_update_split_over_4_devices_equals_one_device_with_whole_batch():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  result = subprocess.run([sys.executable, str(HERE / "multidevice_update.py")], env=env,
                          capture_output=True, text=True, timeout=600, cwd=HERE.parent)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  print(out)
  # Two updates move parameters by ~6e-4; the shards agree with one device to ~5e-8.
  assert out["param_change"] > 1e-4
  assert out["pmap_vs_single"] < 1e-6 and out["shard_map_vs_single"] < 1e-6
  assert out["devices_identical"]  # replicated parameters stay bit-identical
  assert max(out["critic_loss"]) - min(out["critic_loss"]) < 1e-5
  # score_scale='running': the moving average is the global batch's, on every device.
  assert out["running_pmap_vs_single"] < 1e-6
  for name in ("running_norm", "reward_norm"):  # the global batch's statistic everywhere
    norms = out[name]
    assert norms[0] > 0 and max(norms) - min(norms) < 1e-6 * norms[0], (name, norms)
  gains = out["log_m_q_gain"]  # the spread controller's factor: one value, moved
  assert abs(gains[0]) > 1e-3 and max(gains) - min(gains) < 1e-6, gains


ROOT = HERE.parent
from cli_cases import run_cases_in_a_process  # pylint: disable=wrong-import-position
from test_run_script import TINY_FLAGS, run_in_process  # pylint: disable=wrong-import-position


def run_on_devices(n, *cases):
  """run.py's main on ``n`` local devices (XLA_FLAGS), in one helper process
  (tests/cli_cases.py), for each argument list in turn: their outcomes."""
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
  return run_cases_in_a_process("qsm_jax.cli.train", cases, env=env)


def free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_devices_and_two_processes_train_the_same_run_which_resumes(tmp_path, capsys):
  """One run three ways: 2 local devices (XLA_FLAGS) and 2 processes x 1 device
  (jax.distributed on localhost, gloo CPU collectives) train the same agent; the
  2-device run resumes on 2, and its checkpoint loads in this 1-device process and is
  refused on a device count it was not written for.

  On the spring backend: Brax's generalized backend builds arrays on jax.devices()[0]
  (mjx.make_data, its system), which other processes cannot address (README, devices)."""
  flags = [*TINY_FLAGS, "--backend=spring", "--total_steps=120", "--checkpoint_every=0"]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device each
  port = free_port()
  procs = [subprocess.Popen(
      [sys.executable, str(ROOT / "experiments" / "run.py"), *flags,
       f"--run_dir={tmp_path / 'two_processes'}", f"--coordinator_address=localhost:{port}",
       "--num_processes=2", f"--process_id={i}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
           for i in range(2)]

  # On 2 local devices, in one process: bad input, the run, and its resume.
  run = tmp_path / "two_devices"
  bad, local, resumed = run_on_devices(
      2, ["--num_envs=5", f"--run_dir={tmp_path / 'bad'}"], [*flags, f"--run_dir={run}"],
      [f"--resume={run}", "--total_steps=160"])
  assert bad["code"] == 1
  assert "error: --num_envs (5) must be divisible by the number of devices (2)" in bad["stderr"]
  assert not (tmp_path / "bad").exists()  # refused before writing anything
  assert local["code"] == 0, local["stderr"][-3000:]
  assert "2 x cpu device(s)" in local["stdout"]
  assert resumed["code"] == 0, resumed["stderr"][-3000:]
  assert "resumed from" in resumed["stdout"] and "at env step 120" in resumed["stdout"]
  rows = (run / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(r)["env_steps"] for r in rows] == [80, 120, 160]

  outs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "2 x cpu device(s) in 2 processes" in outs[0][0]
  assert "step       120/120" in outs[0][0] and "step " not in outs[1][0]  # one voice
  rows = (tmp_path / "two_processes" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(r)["env_steps"] for r in rows] == [80, 120]  # written once

  from qsm_jax import load_policy  # pylint: disable=import-outside-toplevel
  from qsm_jax.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
  restore = lambda name: Checkpointer(str(tmp_path / name / "checkpoints")).restore_arrays(120)
  (multi, meta), (single, _) = restore("two_processes"), restore("two_devices")
  assert meta.num_devices == 2 and meta.num_processes == 2
  for a, b in zip(jax.tree.leaves(multi["agent"]), jax.tree.leaves(single["agent"])):
    np.testing.assert_array_equal(a[0], a[1])  # both processes hold the same agent
    np.testing.assert_array_equal(b[0], b[1])  # so do both local devices
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # same algorithm as 2 local devices
  # Each device (and each process) stepped its own envs (distinct device keys).
  obs = multi["env_state"]["obs"]
  assert not np.allclose(obs[0], obs[1])
  np.testing.assert_allclose(obs, single["env_state"]["obs"], rtol=1e-5, atol=1e-5)

  # The 2-device run's arrays and policy load in this 1-device process.
  kernel = single["agent"]["actor_params"]["params"]["MLP_1"]["Dense_0"]["kernel"]
  assert kernel.shape[:2] == (2, 1)  # (devices, seeds, ...)
  policy = load_policy(str(run), step=120)
  np.testing.assert_array_equal(
      np.asarray(policy.agent.actor_params["params"]["MLP_1"]["Dense_0"]["kernel"]), kernel[1, 0])
  actions = np.asarray(policy(np.zeros((3, 4), np.float32), jax.random.PRNGKey(0)))
  assert actions.shape == (3, 1) and np.all(np.abs(actions) <= 1)
  # Resuming it on this process's one device is refused, and leaves its options alone.
  capsys.readouterr()
  assert run_in_process(f"--resume={run}", "--total_steps=200") == 1
  assert "written by a run on 2 device(s); resume it with --num_devices=2" in (
      capsys.readouterr().err)
  assert json.loads((run / "run_options.json").read_text())["num_devices"] is None
