"""The benchmarks' --quick modes run end to end and print their side-by-side tables
(in-process; profile_update.py as a script of its own).

Only the tables' rows and the JSON's shape are checked, never timings (those go in
benchmarks/RESULTS.md).
"""
import importlib
import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("gymnasium")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks' modules, imported below


def run_quick(script, tmp_path, capsys):
  """The benchmark's main with --quick, in this process (its imports are the suite's):
  what it printed and the JSON it wrote."""
  out = tmp_path / "results.json"
  importlib.import_module(script).main(["--quick", "--json", str(out)])
  return capsys.readouterr().out, json.loads(out.read_text())


def test_bench_update_quick(tmp_path, capsys):
  stdout, results = run_quick("bench_update", tmp_path, capsys)
  assert "machine: " in stdout and "fp32 matmul peak" in stdout
  for impl in ("jax_jit", "jax_scan4", "torch_eager"):
    assert f"| small | 256 | {impl} |" in stdout, impl
  assert {r["impl"] for r in results["rows"]} >= {"jax_jit", "jax_scan4", "torch_eager"}
  assert all(r["updates_per_s"] > 0 and r["flops"] > 0 for r in results["rows"])
  assert results["peak"]["peak_gflops"] > 0
  assert results["machine"]["torch"] and results["machine"]["jax"]


@pytest.mark.slow
def test_bench_train_quick(tmp_path, capsys):
  stdout, results = run_quick("bench_train", tmp_path, capsys)
  for impl in ("qsm_jax+brax", "torch_eager+gymnasium"):
    assert f"| small | 4 | {impl} |" in stdout, impl
  rows = {r["impl"]: r for r in results["rows"]}
  assert set(rows) >= {"qsm_jax+brax", "torch_eager+gymnasium"}
  # utd 1: one update per env step on both sides.
  for r in rows.values():
    assert r["env_steps_per_s"] > 0
    assert r["updates_per_s"] == pytest.approx(r["env_steps_per_s"])


def test_flop_count_matches_xla_cost_analysis():
  """bench_update's FLOPs (the "% peak" numerator) agree with XLA's own count of the update.

  XLA counts a while loop's body once (the T-step sampler as one step) and adds the
  elementwise work, so it may exceed the matmul count by a few percent, never fall short.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import qsm_jax as q  # pylint: disable=import-outside-toplevel
  from bench_update import ACT_DIM, OBS_DIM, SIZES, random_batch, update_flops, xla_flops  # pylint: disable=import-outside-toplevel
  for size, batch_size in (("spec", 256), ("small", 1024)):
    cfg = SIZES[size]
    state = q.init_state(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config=cfg)
    batch = random_batch(jax.random.PRNGKey(1), batch_size)
    compiled = q.qsm_update.lower(state, batch, jax.random.PRNGKey(2)).compile()
    parts = update_flops(cfg, OBS_DIM, ACT_DIM, batch_size)
    counted = sum(parts.values()) - parts["sampler"] * (cfg.T - 1) / cfg.T
    assert 1.0 <= xla_flops(compiled) / counted < 1.05, (size, xla_flops(compiled), counted)


def test_profile_update_runs(tmp_path):
  proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_update.py"),
                         "--size", "small", "--updates", "2"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "matmuls (dot)" in proc.stdout
  assert "critic, hidden                   256x256x256" in proc.stdout
