"""Data-parallel qsm_update on 4 simulated CPU devices (a subprocess sets XLA_FLAGS)."""
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent


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


ROOT = HERE.parent
from test_run_script import TINY_FLAGS  # pylint: disable=wrong-import-position


def run_on_devices(n, *args):
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
  return subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), *args], env=env,
                        capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.mark.slow
def test_four_device_run_keeps_replicas_identical_and_checks_shapes(tmp_path):
  bad = run_on_devices(4, "--num_envs=6", f"--run_dir={tmp_path / 'bad'}")
  assert bad.returncode == 1
  assert "error: --num_envs (6) must be divisible by the number of devices (4)" in bad.stderr
  assert not (tmp_path / "bad").exists()  # refused before writing anything

  result = run_on_devices(4, *TINY_FLAGS, "--total_steps=200", f"--run_dir={tmp_path / 'run'}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "4 x cpu device(s)" in result.stdout
  # The runner asserts identical replicas before every checkpoint; check the saved copy
  # too. This process has one device: the 4-device run's arrays and policy load here.
  from qsm_jax import load_policy  # pylint: disable=import-outside-toplevel
  from qsm_jax.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
  raw, _ = Checkpointer(str(tmp_path / "run" / "checkpoints")).restore_arrays(200)
  leaves = jax.tree.leaves(raw["agent"])
  assert leaves[0].shape[0] == 4 and all(np.all(x == x[:1]) for x in leaves)
  assert not np.allclose(raw["env_state"]["obs"][0], raw["env_state"]["obs"][1])
  policy = load_policy(str(tmp_path / "run"))
  kernel = raw["agent"]["actor_params"]["params"]["MLP_1"]["Dense_0"]["kernel"]
  assert kernel.shape[:2] == (4, 1)  # (devices, seeds, ...)
  np.testing.assert_array_equal(
      np.asarray(policy.agent.actor_params["params"]["MLP_1"]["Dense_0"]["kernel"]), kernel[3, 0])
  actions = np.asarray(policy(np.zeros((3, 4), np.float32), jax.random.PRNGKey(0)))
  assert actions.shape == (3, 1) and np.all(np.abs(actions) <= 1)
  moved = run_on_devices(4, f"--resume={tmp_path / 'run'}", "--num_devices=2",
                         "--total_steps=240")
  assert moved.returncode == 1
  assert "written by a run on 4 device(s); resume it with --num_devices=4" in moved.stderr
  # The refused resume left the run's saved options alone (a plain --resume still works).
  assert json.loads((tmp_path / "run" / "run_options.json").read_text())["num_devices"] is None
  resumed = run_on_devices(4, f"--resume={tmp_path / 'run'}", "--total_steps=240")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from" in resumed.stdout and "at env step 200" in resumed.stdout
  rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(r)["env_steps"] for r in rows][-2:] == [200, 240]


def free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_together_like_two_local_devices(tmp_path):
  """jax.distributed on localhost (gloo CPU collectives): 2 processes x 1 device.

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
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "2 x cpu device(s) in 2 processes" in outs[0][0]
  assert "step       120/120" in outs[0][0] and "step " not in outs[1][0]  # one voice
  rows = (tmp_path / "two_processes" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(r)["env_steps"] for r in rows] == [80, 120]  # written once

  local = run_on_devices(2, *flags, f"--run_dir={tmp_path / 'two_devices'}")
  assert local.returncode == 0, local.stderr[-3000:]
  from qsm_jax.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel
  restore = lambda name: Checkpointer(str(tmp_path / name / "checkpoints")).restore_arrays(120)
  (multi, meta), (single, _) = restore("two_processes"), restore("two_devices")
  assert meta.num_devices == 2 and meta.num_processes == 2
  for a, b in zip(jax.tree.leaves(multi["agent"]), jax.tree.leaves(single["agent"])):
    np.testing.assert_array_equal(a[0], a[1])  # both processes hold the same agent
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # same algorithm as 2 local devices
  # Each process stepped its own envs (distinct device keys), as the 2 local devices did.
  obs = multi["env_state"]["obs"]
  assert not np.allclose(obs[0], obs[1])
  np.testing.assert_allclose(obs, single["env_state"]["obs"], rtol=1e-5, atol=1e-5)
