"""Data-parallel qsm_update on 4 simulated CPU devices (a subprocess sets XLA_FLAGS)."""
import json
import os
import pathlib
import subprocess
import sys

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
