"""The benchmarks' --quick modes run end to end and print their side-by-side tables.

Only the tables' rows and the JSON's shape are checked, never timings (those go in
benchmarks/RESULTS.md).
"""
import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("gymnasium")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_quick(script, tmp_path):
  out = tmp_path / "results.json"
  proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick",
                         "--json", str(out)], cwd=tmp_path, capture_output=True, text=True,
                        timeout=900, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout, json.loads(out.read_text())


def test_bench_update_quick(tmp_path):
  stdout, results = run_quick("bench_update.py", tmp_path)
  assert "machine: " in stdout and "fp32 matmul peak" in stdout
  for impl in ("jax_jit", "jax_scan4", "torch_eager"):
    assert f"| small | 256 | {impl} |" in stdout, impl
  assert {r["impl"] for r in results["rows"]} >= {"jax_jit", "jax_scan4", "torch_eager"}
  assert all(r["updates_per_s"] > 0 and r["flops"] > 0 for r in results["rows"])
  assert results["peak"]["peak_gflops"] > 0
  assert results["machine"]["torch"] and results["machine"]["jax"]


def test_bench_train_quick(tmp_path):
  stdout, results = run_quick("bench_train.py", tmp_path)
  for impl in ("qsm_jax+brax", "torch_eager+gymnasium"):
    assert f"| small | 4 | {impl} |" in stdout, impl
  rows = {r["impl"]: r for r in results["rows"]}
  assert set(rows) >= {"qsm_jax+brax", "torch_eager+gymnasium"}
  # utd 1: one update per env step on both sides.
  for r in rows.values():
    assert r["env_steps_per_s"] > 0
    assert r["updates_per_s"] == pytest.approx(r["env_steps_per_s"])
