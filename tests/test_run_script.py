"""experiments/run.py as a user runs it: artifacts, errors, kill-and-resume, NaN stop."""
import dataclasses
import importlib
import json
import os
import pathlib
import re
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
from qsm_jax.config import TrainConfig
from qsm_jax.training import make_trainer
from cli_cases import run_main
from test_training import TINY_LOOP

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--env=inverted_pendulum", "--num_envs=4", "--num_eval_envs=4",
              "--warmup_steps=40", "--batch_size=16", "--buffer_size=400", "--log_every=40",
              "--eval_every=80", "--episode_length=50", "--actor_hidden=16,16",
              "--critic_hidden=16,16", "--time_hidden=8,8", "--fourier_size=8"]


def run_script(*args, timeout=600, **kwargs):
  return subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), *args],
                        capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs)


def restore(run_dir):
  cfg = TrainConfig.from_dict(json.loads((pathlib.Path(run_dir) / "config.json").read_text()))
  trainer = make_trainer(cfg)
  template = jax.jit(jax.vmap(trainer.init))(jax.random.split(jax.random.PRNGKey(0),
                                                              cfg.num_seeds))
  ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"))
  state, meta = ckpt.restore(template)
  ckpt.close()
  return state, meta


RUN = importlib.import_module("qsm_jax.cli.train")  # defines its absl flags, once


def run_in_process(*args):
  """experiments/run.py's main with these flags, in this process: its exit code."""
  return run_main(RUN, *args)


def _saved_run(tmp_path, config):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  (run_dir / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
  return run_dir


def _config_without(path):
  config = TINY_LOOP.to_dict()
  *parents, name = path.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  del node[name]
  return config


BAD_CONFIGS = {
    "empty": ({}, "missing field 'env'"),
    "not_an_object": ("[1, 2]", "the config must be a JSON object, got list"),
    "not_json": ("{'env': ", "is not valid JSON"),
    "missing": (_config_without("qsm.T"), "missing field 'qsm.T'"),
    "unknown": ({**TINY_LOOP.to_dict(), "learning_rate": 1e-3}, "unknown field 'learning_rate'"),
    "wrong_type": ({**TINY_LOOP.to_dict(), "num_envs": "4"}, "field 'num_envs' must be an integer"),
    "wrong_nested": ({**TINY_LOOP.to_dict(), "hparams": {**TINY_LOOP.to_dict()["hparams"],
                                                         "M_q": "big"}},
                     "field 'hparams.M_q' must be a number, got 'big'"),
    "bool_for_int": ({**TINY_LOOP.to_dict(), "num_seeds": True}, "'num_seeds' must be an integer"),
}


@pytest.mark.parametrize("args, message", [
    (["--env=pong"], "error: unknown env 'pong'; valid envs: ant, halfcheetah"),
    (["--num_envs=0"], "error: --num_envs must be a positive integer"),
    (["--batch_size=512", "--buffer_size=256"], "is larger than the replay buffer (256)"),
    (["--resume=/nonexistent/run"], "error: --resume: /nonexistent/run/config.json does not exist"),
    (["--M_q=inf"], "error: hyperparameter M_q=inf must be finite"),
    (["--sweep=M_q=1,inf"], "error: hyperparameter M_q=inf must be finite"),
    (["--reward_scale=nan"], "error: --reward_scale must be a finite number, got nan"),
    (["--utd=inf"], "error: --utd must be a finite number, got inf"),
    (["--critic_hidden="], "error: critic_hidden must list at least one hidden width"),
    (["--actor_hidden="], "error: actor_hidden must list at least one hidden width"),
    (["--num_devices=0"], "error: --num_devices must be a positive integer"),
    (["--max_to_keep=0"], "error: --max_to_keep must be a positive integer, got 0"),
    (["--checkpoint_every=-1"], "error: --checkpoint_every must be an integer >= 0"),
])
def test_bad_input_exits_nonzero_with_one_line(args, message, tmp_path, capsys):
  args = [*args, f"--runs_dir={tmp_path}"]
  assert run_in_process(*args) == 1
  err = capsys.readouterr().err
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], err[-2000:]
  assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_resume_of_a_bad_config_json_gives_one_line(case, tmp_path, capsys):
  config, message = BAD_CONFIGS[case]
  run_dir = _saved_run(tmp_path, config)
  before = sorted(p.name for p in run_dir.iterdir())
  assert run_in_process(f"--resume={run_dir}") == 1
  err = capsys.readouterr().err
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], err[-2000:]
  assert f"{run_dir}/config.json" in errors[0]  # names the file
  assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written
  assert len(err.splitlines()) == 1, err  # no traceback


def test_config_of_an_older_run_resumes_with_the_new_fields_defaults():
  """Fields added since the first release may be missing from a saved config.json."""
  old = _config_without("qsm.score_scale")
  del old["algo"], old["sweep_name"], old["sweep_values"], old["fresh_resets"]
  del old["qsm"]["ascent_sampler"]
  cfg = TrainConfig.from_saved(old)
  assert cfg.algo == "qsm" and cfg.qsm.score_scale == "fixed" and cfg.sweep_values == ()
  # A run saved before the ascent sampler resumes with the paper's sampler, whatever its
  # env's preset says today.
  assert not cfg.qsm.ascent_sampler
  # Runs saved before fresh_resets restarted finished envs from their first state.
  assert TINY_LOOP.fresh_resets and not cfg.fresh_resets
  assert dataclasses.replace(cfg, qsm=TINY_LOOP.qsm, algo=TINY_LOOP.algo,
                             fresh_resets=True) == TINY_LOOP


def test_script_smoke_bad_flag_in_a_subprocess():
  """One subprocess: the script's own entry point prints one error line and exits 1."""
  result = run_script("--num_envs=0", timeout=120)
  assert result.returncode == 1
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "--num_envs must be a positive integer" in errors[0]
  # --help lists the flags generated from the configs, not only the script's own.
  shown = run_script("--help", timeout=120).stdout
  for flag in ("--resume", "--num_envs", "--critic_layer_norm", "--M_q", "--score_scale"):
    assert f"{flag[2:]}:" in shown, flag  # bools show as --[no]name


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_run")  # shares test_loading's 2-seed programs (one worker)
def test_run_writes_every_artifact_and_rejects_mismatched_resume(tmp_path, capsys):
  run_dir = tmp_path / "run"
  assert run_in_process(*TINY_FLAGS, "--total_steps=200", "--num_seeds=2",
                        f"--run_dir={run_dir}") == 0
  stdout = capsys.readouterr().out
  assert "compiled the training chunk" in stdout and "ETA" in stdout
  config = json.loads((run_dir / "config.json").read_text())
  assert config["env"] == "inverted_pendulum" and config["qsm"]["actor_hidden"] == [16, 16]
  rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert [r["env_steps"] for r in rows] == [80, 120, 160, 200]
  assert len(rows[-1]["eval_return"]) == 2 and rows[-1]["critic_loss_mean"] is not None
  assert any(f.name.startswith("events.out.tfevents") for f in (run_dir / "tb").iterdir())
  assert (run_dir / "learning_curve.png").stat().st_size > 10_000
  assert (run_dir / "checkpoints" / "200").is_dir()
  # A resume whose flags contradict the saved run is refused before any compile.
  assert run_in_process(f"--resume={run_dir}", "--env=hopper") == 1
  assert "checkpoint config does not match: env: saved 'inverted_pendulum'" in (
      capsys.readouterr().err)


def _checkpoint_steps(ckpts, partial=False):
  """Steps of the finished checkpoints (or, partial=True, of those being written)."""
  if not ckpts.exists():
    return []
  if partial:
    return sorted(int(p.name.split(".")[0]) for p in ckpts.glob("*.orbax-checkpoint-tmp*"))
  return sorted(int(p.name) for p in ckpts.glob("*") if p.name.isdigit())


def _run_until(args, stop, deadline_s=300):
  """Starts run.py with ``args``; SIGKILLs it as soon as ``stop()`` is true. Returns
  whether it was killed (False: it finished first)."""
  proc = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "run.py"), *args],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + deadline_s
  while time.time() < deadline and proc.poll() is None:
    if stop():
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.005)
  return proc.wait() == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_loop")  # one worker traces TINY_LOOP's 1-seed programs once
def test_killed_run_resumes_twice_to_the_same_parameters_keeping_its_options(tmp_path, capsys):
  """Killed, resumed with only --resume (which keeps the saved --checkpoint_every=40),
  killed again while that resumed run writes a checkpoint, resumed again with an
  override (in this process, lowering no program again): bit-identical to the
  uninterrupted run, metrics without gap or duplicate. The spread controller is on, so
  its factor on M_q (QSMState.log_m_q_gain) resumes exactly too.
  The two killed sessions are processes of their own; the reference run and the last
  session run in this process (run.py's main). The reference saves only its final state,
  so the comparison also shows that saving checkpoints leaves training untouched."""
  flags = [*TINY_FLAGS, "--total_steps=440", "--checkpoint_every=40", "--spread_target=0.05"]
  reference = tmp_path / "reference"
  assert run_in_process(*flags, "--checkpoint_every=0", f"--run_dir={reference}") == 0

  killed = tmp_path / "killed"
  ckpts = killed / "checkpoints"
  assert _run_until([*flags, f"--run_dir={killed}"],
                    lambda: any(s >= 160 for s in _checkpoint_steps(ckpts)))
  first_kill = _checkpoint_steps(ckpts)[-1]
  assert first_kill < 440, "the run must be killed before its end"
  assert json.loads((killed / "run_options.json").read_text())["checkpoint_every"] == 40

  # Generation 2: only --resume; killed while it writes a checkpoint after its first one.
  seen = set()

  def writing_a_later_checkpoint():
    seen.update(_checkpoint_steps(ckpts, partial=True) + _checkpoint_steps(ckpts))
    return (any(s >= first_kill + 80 for s in _checkpoint_steps(ckpts, partial=True))
            or any(s >= first_kill + 120 for s in _checkpoint_steps(ckpts)))  # missed it
  assert _run_until([f"--resume={killed}"], writing_a_later_checkpoint), (
      "the resumed run ended before it was killed")
  # It kept the saved cadence: checkpoints every 40 env steps after the resume (the
  # flag's default, 50,000, would have written none before the end).
  later = sorted(s for s in seen if s > first_kill)
  assert later[:2] == [first_kill + 40, first_kill + 80], sorted(seen)
  assert all(s % 40 == 0 and s < 440 for s in later)

  # Generation 3: an override is honoured and said in one line. In this process, which
  # ran the reference, the resume lowers no program again (the restored state has a
  # fresh state's signature: uncommitted arrays on the default device).
  capsys.readouterr()
  lowered = []

  def listen(event, duration_s, fun_name=None, **_):
    del duration_s
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
      lowered.append(fun_name)
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    assert run_in_process(f"--resume={killed}", "--max_to_keep=20") == 0
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  assert lowered == [], lowered
  stdout = capsys.readouterr().out
  assert "resume: --max_to_keep=20 overrides the run's saved 2" in stdout
  assert "resumed from" in stdout
  assert re.search(r"sat [\d.]+ M_q [\d.e+-]+ spread [\d.]+ \| ETA", stdout)  # the controller
  second_kill = int(stdout.split("resumed from")[1].split("env step ")[1].split()[0])
  assert first_kill + 40 <= second_kill < 440
  steps = _checkpoint_steps(ckpts)
  assert steps[-1] == 440 and set(range(second_kill + 40, 441, 40)) <= set(steps)
  ref_state, ref_meta = restore(reference)
  res_state, res_meta = restore(killed)
  assert ref_meta.env_steps == res_meta.env_steps == 440
  assert np.all(np.abs(ref_state.agent.log_m_q_gain) > 1e-4)  # the controller moved M_q
  for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(res_state)):
    np.testing.assert_array_equal(a, b)
  rows = [json.loads(l) for l in (killed / "metrics.jsonl").read_text().splitlines()]
  assert [r["env_steps"] for r in rows] == list(range(80, 441, 40))  # no gap, no duplicate
  walls = [r["wall_s"] for r in rows]
  assert walls == sorted(walls)  # each resumed session's clock continues the last one's
  assert json.loads((killed / "run_options.json").read_text())["max_to_keep"] == 20


@pytest.mark.xdist_group("tiny_loop")
def test_leftover_partial_checkpoint_does_not_hide_the_last_good_one(tmp_path):
  cfg = TINY_LOOP
  result = train(cfg, RunOptions(run_dir=str(tmp_path / "run"), write_plot=False),
                 log=lambda s: None)
  ckpt_dir = tmp_path / "run" / "checkpoints"
  (ckpt_dir / "999.orbax-checkpoint-tmp").mkdir()  # a write that died half-way
  (ckpt_dir / "999.orbax-checkpoint-tmp" / "junk").write_text("partial")
  state, meta = restore(tmp_path / "run")
  assert meta.env_steps == 200
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


def test_resume_options_keep_the_saved_ones_and_report_overrides(tmp_path):
  run_dir = str(tmp_path)
  opts, notes = runner_module.resume_options(run_dir, {})
  assert opts == RunOptions(run_dir=run_dir, resume=True)  # nothing saved: the defaults
  assert len(notes) == 1 and "has no run_options.json" in notes[0]
  runner_module.save_run_options(RunOptions(run_dir=run_dir, checkpoint_every=40,
                                            max_to_keep=3, checkpoint_replay=False))
  opts, notes = runner_module.resume_options(run_dir, {})
  assert (opts.checkpoint_every, opts.max_to_keep, opts.checkpoint_replay, opts.resume) == (
      40, 3, False, True) and notes == []
  opts, notes = runner_module.resume_options(run_dir, {"checkpoint_every": 80,
                                                       "max_to_keep": 3})
  assert opts.checkpoint_every == 80 and opts.max_to_keep == 3
  assert notes == ["resume: --checkpoint_every=80 overrides the run's saved 40"]
  (tmp_path / "run_options.json").write_text('{"checkpoint_every": -5}')
  with pytest.raises(ValueError, match=r"run_options.json: --checkpoint_every must be an "
                                       r"integer >= 0"):
    runner_module.resume_options(run_dir, {})
  (tmp_path / "run_options.json").write_text('{"eval_every": 5}')
  with pytest.raises(ValueError, match="run_options.json: unknown field 'eval_every'"):
    runner_module.resume_options(run_dir, {})
