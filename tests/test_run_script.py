"""experiments/run.py as a user runs it: artifacts, errors, kill-and-resume, NaN stop."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from qsm_jax.checkpoint import Checkpointer
from qsm_jax.runner import NonFiniteError, RunOptions, train
from qsm_jax import runner as runner_module
from qsm_jax.training import TrainConfig, make_trainer
from test_training import TINY_LOOP

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--env=inverted_pendulum", "--num_envs=4", "--num_eval_envs=4",
              "--warmup_steps=40", "--batch_size=16", "--buffer_size=400", "--log_every=40",
              "--eval_every=80", "--episode_length=50", "--actor_hidden=16,16",
              "--critic_hidden=16,16", "--time_hidden=8,8"]


def run_script(*args, timeout=600, **kwargs):
  return subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), *args],
                        capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs)


def restore(run_dir):
  cfg = TrainConfig.from_dict(json.loads((pathlib.Path(run_dir) / "config.json").read_text()))
  trainer = make_trainer(cfg)
  template = jax.jit(jax.vmap(trainer.init))(jax.random.split(jax.random.PRNGKey(0),
                                                              cfg.num_seeds))
  ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"))
  state, meta, _ = ckpt.restore(template)
  ckpt.close()
  return state, meta


@pytest.mark.parametrize("args, message", [
    (["--env=pong"], "error: unknown env 'pong'; valid envs: ant, halfcheetah"),
    (["--num_envs=0"], "error: --num_envs must be a positive integer"),
    (["--batch_size=512", "--buffer_size=256"], "is larger than the replay buffer (256)"),
    (["--resume=/nonexistent/run"], "error: --resume: /nonexistent/run/config.json does not exist"),
])
def test_bad_input_exits_nonzero_with_one_line(args, message):
  result = run_script(*args, timeout=120)
  assert result.returncode == 1
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]


def test_run_writes_every_artifact_and_rejects_mismatched_resume(tmp_path):
  run_dir = tmp_path / "run"
  result = run_script(*TINY_FLAGS, "--total_steps=200", "--num_seeds=2",
                      f"--run_dir={run_dir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "compiled the training chunk" in result.stdout and "ETA" in result.stdout
  config = json.loads((run_dir / "config.json").read_text())
  assert config["env"] == "inverted_pendulum" and config["qsm"]["actor_hidden"] == [16, 16]
  rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert [r["env_steps"] for r in rows] == [80, 120, 160, 200]
  assert len(rows[-1]["eval_return"]) == 2 and rows[-1]["critic_loss_mean"] is not None
  assert any(f.name.startswith("events.out.tfevents") for f in (run_dir / "tb").iterdir())
  assert (run_dir / "learning_curve.png").stat().st_size > 10_000
  assert (run_dir / "checkpoints" / "200").is_dir()
  # A resume whose flags contradict the saved run is refused before any compile.
  result = run_script(f"--resume={run_dir}", "--env=hopper", timeout=120)
  assert result.returncode == 1
  assert "checkpoint config does not match: env: saved 'inverted_pendulum'" in result.stderr


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
  flags = [*TINY_FLAGS, "--total_steps=440", "--checkpoint_every=40"]
  reference = tmp_path / "reference"
  result = run_script(*flags, f"--run_dir={reference}")
  assert result.returncode == 0, result.stderr[-3000:]

  killed = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "run.py"), *flags,
                           f"--run_dir={killed}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  ckpts = killed / "checkpoints"
  while time.time() < deadline:
    done = [p for p in ckpts.glob("*") if p.name.isdigit()] if ckpts.exists() else []
    if any(int(p.name) >= 160 for p in done):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  finished = sorted(int(p.name) for p in ckpts.glob("*") if p.name.isdigit())
  assert finished and finished[-1] < 440, "the run must be killed before its end"

  result = run_script(f"--resume={killed}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resumed from" in result.stdout
  ref_state, ref_meta = restore(reference)
  res_state, res_meta = restore(killed)
  assert ref_meta["env_steps"] == res_meta["env_steps"] == 440
  for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(res_state)):
    np.testing.assert_array_equal(a, b)
  rows = [json.loads(l) for l in (killed / "metrics.jsonl").read_text().splitlines()]
  assert [r["env_steps"] for r in rows] == list(range(80, 441, 40))  # no gap, no duplicate
  walls = [r["wall_s"] for r in rows]
  assert walls == sorted(walls)  # the resumed session's clock continues the first one's


def test_leftover_partial_checkpoint_does_not_hide_the_last_good_one(tmp_path):
  cfg = TINY_LOOP
  result = train(cfg, RunOptions(run_dir=str(tmp_path / "run"), write_plot=False),
                 log=lambda s: None)
  ckpt_dir = tmp_path / "run" / "checkpoints"
  (ckpt_dir / "999.orbax-checkpoint-tmp").mkdir()  # a write that died half-way
  (ckpt_dir / "999.orbax-checkpoint-tmp" / "junk").write_text("partial")
  state, meta = restore(tmp_path / "run")
  assert meta["env_steps"] == 200
  for a, b in zip(jax.tree.leaves(result.train_state), jax.tree.leaves(state)):  # replay too
    np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  real_make_trainer = runner_module.make_trainer

  def poisoned(cfg, *args):
    trainer = real_make_trainer(cfg, *args)

    def chunk(ts):
      ts, metrics = trainer.train_chunk(ts)
      bad = ts.env_steps > 120
      metrics["critic_loss"] = jax.numpy.where(bad, jax.numpy.nan, metrics["critic_loss"])
      return ts, metrics
    return trainer._replace(train_chunk=chunk)

  monkeypatch.setattr(runner_module, "make_trainer", poisoned)
  with pytest.raises(NonFiniteError, match="non-finite critic_loss at env step 160"):
    train(TINY_LOOP, RunOptions(run_dir=str(tmp_path / "run"), checkpoint_every=40),
          log=lambda s: None)
  ckpt = Checkpointer(str(tmp_path / "run" / "checkpoints"))
  assert ckpt.latest_step() == 120
  ckpt.close()
