"""Using a trained policy: load_policy round trip, evaluate.py, render.py, and their errors."""
import base64
import dataclasses
import json
import pathlib
import re
import shutil
import subprocess
import sys
import zlib

import jax
import numpy as np
import pytest

from qsm_jax import load_policy, load_run
from qsm_jax.checkpoint import Checkpointer
from qsm_jax.loading import CheckpointError
from qsm_jax.policy import sample_actions
from qsm_jax.runner import RunOptions, train
from cli_cases import run_cases_in_a_process
from test_training import TINY_LOOP

ROOT = pathlib.Path(__file__).resolve().parent.parent
OBS = np.linspace(-0.5, 0.5, 5 * 4, dtype=np.float32).reshape(5, 4)  # inverted_pendulum obs
KEY = jax.random.PRNGKey(7)
ACTION = np.linspace(-0.9, 0.9, 5, dtype=np.float32).reshape(5, 1)
STEP = np.full((5, 1), 2.0, np.float32)
# One xdist worker runs this file, so the tiny_run fixture is trained once (pyproject.toml);
# together its tests take minutes, so they are handed out first (slow).
pytestmark = [pytest.mark.xdist_group("tiny_run"), pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A 2-agent tiny run with checkpoints at env steps 160 and 200, and its in-memory
  actions at save time (agent 1) for fixed observations."""
  run_dir = tmp_path_factory.mktemp("runs") / "tiny"
  cfg = dataclasses.replace(TINY_LOOP, num_seeds=2)
  result = train(cfg, RunOptions(run_dir=str(run_dir), checkpoint_every=80, write_plot=False),
                 log=lambda s: None)
  agent = jax.tree.map(lambda x: x[1], result.train_state.agent)
  actions = {
      "default": np.asarray(sample_actions(agent, OBS, KEY, explore=False)),
      "explore": np.asarray(sample_actions(agent, OBS, KEY, explore=True)),
      "temperature0": np.asarray(sample_actions(agent, OBS, KEY, explore=False, temperature=0.0)),
      # The noise model's raw output (the tiny policy's actions saturate at the bounds).
      "eps": np.asarray(agent.noise_model.apply(agent.actor_params, OBS, ACTION, STEP)),
  }
  return run_dir, actions


def run_experiment(script, *args, timeout=600):
  return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args],
                        capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def one_error_line(result):
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, result.stderr[-2000:]
  return errors[0]


def test_policy_loaded_in_a_new_process_acts_like_the_policy_at_save_time(tiny_run, tmp_path):
  run_dir, expected = tiny_run
  script = (
      "import sys, jax, numpy as np\n"
      "from qsm_jax import load_policy\n"
      f"obs, key = np.load({str(tmp_path / 'obs.npy')!r}), jax.random.PRNGKey(7)\n"
      "x, t = np.linspace(-0.9, 0.9, 5, dtype=np.float32).reshape(5, 1), np.full((5, 1), 2.0, np.float32)\n"
      f"p = load_policy({str(run_dir)!r}, agent=1)\n"
      f"e = load_policy({str(run_dir)!r}, agent=1, explore=True)\n"
      f"z = load_policy({str(run_dir)!r}, agent=1, temperature=0.0)\n"
      "single = p(obs[0], key)\n"
      "assert single.shape == (1,), single.shape\n"
      f"np.savez({str(tmp_path / 'loaded.npz')!r}, default=p(obs, key), explore=e(obs, key),\n"
      "         temperature0=z(obs, key), env_steps=p.env_steps, step=int(p.agent.step),\n"
      "         eps=p.agent.noise_model.apply(p.agent.actor_params, obs, x, t))\n")
  np.save(tmp_path / "obs.npy", OBS)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  loaded = np.load(tmp_path / "loaded.npz")
  assert int(loaded["env_steps"]) == 200 and int(loaded["step"]) == 160  # 40 warm-up steps
  for name in ("default", "explore", "temperature0", "eps"):
    np.testing.assert_allclose(loaded[name], expected[name], atol=1e-6, err_msg=name)
  # Exploration really changes the actions, and the network output varies with the input
  # (so the comparisons above can fail).
  assert not np.allclose(expected["default"], expected["explore"])
  assert np.ptp(expected["eps"]) > 1e-2


def test_readme_loading_example_runs(tiny_run):
  run_dir, _ = tiny_run
  text = (ROOT / "README.md").read_text()
  block = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "load_policy(" in b][0]
  namespace = {}
  exec(compile(block.replace('"runs/pendulum"', repr(str(run_dir))), "README.md", "exec"),  # pylint: disable=exec-used
       namespace)
  assert namespace["actions"].shape == (8, 1)


def test_load_run_reads_each_checkpoint_and_agent(tiny_run):
  run_dir, _ = tiny_run
  run = load_run(str(run_dir))
  assert run.env_steps == 200 and run.config.num_seeds == 2
  earlier = load_policy(str(run_dir / "checkpoints" / "160"), agent=1)
  also_earlier = load_policy(str(run_dir), agent=1, step=160)
  assert earlier.env_steps == also_earlier.env_steps == 160
  latest = load_policy(str(run_dir), agent=1)
  kernel = lambda p: np.asarray(p.agent.actor_params["params"]["MLP_1"]["Dense_0"]["kernel"])
  assert not np.allclose(kernel(earlier), kernel(latest))  # another checkpoint
  assert not np.allclose(kernel(load_policy(str(run_dir), agent=0)), kernel(latest))  # agent
  np.testing.assert_array_equal(kernel(latest), np.asarray(
      run.agents.actor_params["params"]["MLP_1"]["Dense_0"]["kernel"][1]))
  with pytest.raises(ValueError, match=r"agent 2 does not exist: the run trained 2 agent"):
    run.agent(2)
  with pytest.raises(ValueError, match=r"observations must have shape \(batch, 4\)"):
    latest(np.zeros((3, 5)), KEY)


def _write_checkpoint(run_dir, dest, state, meta):
  """A copy of run_dir whose only checkpoint (step 200) holds ``state`` and ``meta``."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("checkpoints"))
  manager = ocp.CheckpointManager(str(dest / "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(create=True))
  manager.save(200, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
  manager.wait_until_finished()
  manager.close()


def test_checkpoints_from_before_added_leaves_resume_as_current_ones(tiny_run, tmp_path):
  # A format-2 checkpoint (before QSMState.reward_norm and log_m_q_gain) and a format-3
  # one (before log_m_q_gain) resume with those leaves at 0, what their runs had: the
  # same agents, bit for bit, as resuming the same checkpoint written in the current
  # format (all without replay, so all refill it alike).
  run_dir, _ = tiny_run
  state, meta = Checkpointer(str(run_dir / "checkpoints")).restore_arrays(200)
  current = {**meta.to_json(), "has_replay": False}
  _write_checkpoint(run_dir, tmp_path / "current", state, current)
  for version, dropped in ((2, ("reward_norm", "log_m_q_gain")), (3, ("log_m_q_gain",))):
    old_state = {**state, "agent": {k: v for k, v in state["agent"].items() if k not in dropped}}
    _write_checkpoint(run_dir, tmp_path / f"format{version}", old_state,
                      {**current, "format_version": version})
  cfg = dataclasses.replace(TINY_LOOP, num_seeds=2, total_steps=240)
  agents = [train(cfg, RunOptions(run_dir=str(tmp_path / name), resume=True, write_plot=False),
                  log=lambda s: None).train_state.agent
            for name in ("current", "format2", "format3")]
  assert int(agents[0].step[0]) > int(state["agent"]["step"][0])  # it trained on
  for old in agents[1:]:
    np.testing.assert_array_equal(old.reward_norm, agents[0].reward_norm)
    np.testing.assert_array_equal(old.log_m_q_gain, np.zeros(2, np.float32))
    for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(agents[0])):
      np.testing.assert_array_equal(a, b)


def test_checkpoint_from_before_score_norm_loads_but_does_not_resume(tiny_run, tmp_path):
  # A format-1 checkpoint (written before QSMState.score_norm existed): the agents load
  # and act as before; resuming it is refused in one line.
  run_dir, actions = tiny_run
  state, meta = Checkpointer(str(run_dir / "checkpoints")).restore_arrays(200)
  agent = {k: v for k, v in state["agent"].items() if k not in ("score_norm", "reward_norm",
                                                                  "log_m_q_gain")}
  old = tmp_path / "old"
  _write_checkpoint(run_dir, old, {**state, "agent": agent},
                    {**meta.to_json(), "format_version": 1, "has_replay": False})
  policy = load_policy(str(old), agent=1)
  np.testing.assert_array_equal(np.asarray(policy(OBS, KEY)), actions["default"])
  assert float(policy.agent.score_norm) == 0.0
  with pytest.raises(ValueError, match="older qsm_jax .checkpoint format 1.* cannot be resumed"):
    train(dataclasses.replace(TINY_LOOP, num_seeds=2, total_steps=240),
          RunOptions(run_dir=str(old), resume=True, write_plot=False), log=lambda s: None)


def corrupt(run_dir, dst):
  shutil.copytree(run_dir, dst)
  for f in (dst / "checkpoints" / "200" / "state").rglob("*"):
    if f.is_file() and f.parent.name == "d":
      f.write_bytes(b"\x93garbage" * 10)
  return dst


def edit_meta(run_dir, dst, change):
  shutil.copytree(run_dir, dst)
  path = dst / "checkpoints" / "200" / "meta" / "metadata"
  meta = json.loads(path.read_text())
  change(meta)
  path.write_text(json.dumps(meta))
  return dst


def test_load_errors_say_what_is_wrong(tiny_run, tmp_path):
  run_dir, _ = tiny_run
  (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
  cases = [
      (tmp_path / "missing", None, "no run folder or checkpoint at"),
      (tmp_path, None, "is not a run folder (no checkpoints/ inside) nor a checkpoint"),
      (tmp_path / "empty", None, "holds no complete checkpoint"),
      (run_dir, 170, "no checkpoint at env step 170 in"),
      (corrupt(run_dir, tmp_path / "corrupt"), None, "cannot read the checkpoint"),
      (edit_meta(run_dir, tmp_path / "newer", lambda m: m.update(format_version=99)), None,
       "written by an incompatible version of qsm_jax (format 99"),
      (edit_meta(run_dir, tmp_path / "foreign",
                 lambda m: m["config"].update(learning_rate=1.0)), None,
       "the saved config: unknown field 'learning_rate'"),
      (edit_meta(run_dir, tmp_path / "resized",
                 lambda m: m["config"]["qsm"].update(actor_hidden=[32, 16])), None,
       "does not match the networks of its saved config"),
  ]
  for path, step, message in cases:
    with pytest.raises(CheckpointError) as info:
      load_run(str(path), step)
    assert message in str(info.value), (path, str(info.value))
    assert "\n" not in str(info.value)


BAD_INPUT = {  # command: (arguments after --run_dir, the start of its one error line)
    "evaluate": [
        (["--env=ant"], "error: the policy was trained on inverted_pendulum (obs 4, act 1) "
         "and cannot act in ant (obs 27, act 8)"),
        (["--episodes=0"], "error: --episodes must be a positive integer"),
        (["--temperature=nan"], "error: --temperature must be a finite number >= 0, got nan"),
        (["--best_of=0"], "error: --best_of must be a positive integer, got 0"),
    ],
    "render": [
        (["--agent=5"], "error: agent 5 does not exist"),
        (["--temperature=-1"], "error: --temperature must be a finite number >= 0, got -1.0"),
    ],
}


@pytest.fixture(scope="module")
def command_outcomes(tiny_run, tmp_path_factory):
  """evaluate.py's and render.py's mains run in-process on the tiny run: one helper
  process per command (tests/cli_cases.py) runs its successful case, then its bad-input
  cases (BAD_INPUT). Per command: its outcomes (exit code, stdout, stderr) in that order.
  The scripts' own exit path, a real process each, is tested below."""
  run_dir, _ = tiny_run
  render_out = tmp_path_factory.mktemp("view") / "rollout.html"
  good = {"evaluate": ["--episodes=6", "--seed=3"],
          "render": [f"--out={render_out}", "--agent=1"]}
  outcomes = {"render_out": render_out}
  for command, cases in BAD_INPUT.items():
    outcomes[command] = run_cases_in_a_process(
        f"qsm_jax.cli.{command}", [[f"--run_dir={run_dir}", *args]
                                   for args in [good[command], *(args for args, _ in cases)]])
  return outcomes


def test_evaluate_script_reports_and_writes_json(tiny_run, command_outcomes):
  run_dir, _ = tiny_run
  result = command_outcomes["evaluate"][0]
  assert result["code"] == 0, result["stderr"][-3000:]
  assert "checkpoint at env step 200 | 6 episodes x 2 agent(s)" in result["stdout"]
  report = json.loads((run_dir / "eval_step200_seed3.json").read_text())
  assert report["env"] == "inverted_pendulum" and report["episodes"] == 6
  assert [a["agent"] for a in report["agents"]] == [0, 1]
  returns = [r for a in report["agents"] for r in a["returns"]]
  lengths = [l for a in report["agents"] for l in a["lengths"]]
  assert len(returns) == 12 and all(1 <= l <= 50 for l in lengths)
  # inverted_pendulum pays 1 per step alive: every return equals its episode length.
  np.testing.assert_allclose(returns, lengths, atol=1e-4)
  assert report["return_min"] <= report["return_mean"] <= report["return_max"]
  assert report["return_mean"] == pytest.approx(np.mean(returns), abs=1e-4)
  assert f"{report['agents'][1]['return_mean']:.2f}" in result["stdout"]  # the printed table


def test_render_script_writes_the_rollout_as_brax_html(command_outcomes):
  result, out = command_outcomes["render"][0], command_outcomes["render_out"]
  assert result["code"] == 0, result["stderr"][-3000:]
  steps = int(re.search(r"\| (\d+) steps, return", result["stdout"]).group(1))
  page = out.read_text()
  encoded = re.search(r'var system = "([A-Za-z0-9+/=]+)"', page).group(1)
  system = json.loads(zlib.decompress(base64.b64decode(encoded)))
  frames = system["states"]["x"]
  assert len(frames) == steps + 1 >= 2  # initial state + one per step
  positions = np.array([f["pos"] for f in frames])
  assert positions.shape[1:] == (2, 3)  # inverted_pendulum: cart and pole
  assert np.abs(positions[-1] - positions[0]).max() > 1e-3  # the agent moved
  assert (out.parent / "rollout_trajectory.png").stat().st_size > 10_000


@pytest.mark.parametrize("command", sorted(BAD_INPUT))
def test_bad_input_is_one_error_line(command_outcomes, command):
  for (args, message), outcome in zip(BAD_INPUT[command], command_outcomes[command][1:]):
    assert outcome["code"] == 1, (args, outcome)
    assert "Traceback" not in outcome["stderr"], (args, outcome["stderr"][-2000:])
    errors = [l for l in outcome["stderr"].splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), (args, outcome["stderr"])


def test_scripts_refuse_a_corrupt_or_missing_checkpoint_in_one_line(tiny_run, tmp_path):
  run_dir, _ = tiny_run
  bad = corrupt(run_dir, tmp_path / "corrupt")
  line = one_error_line(run_experiment("evaluate.py", f"--run_dir={bad}", timeout=300))
  assert line.startswith(f"error: cannot read the checkpoint {bad}/checkpoints/200"), line
  line = one_error_line(run_experiment("render.py", f"--run_dir={tmp_path / 'nope'}",
                                       timeout=300))
  assert line == f"error: no run folder or checkpoint at {tmp_path / 'nope'}", line


def test_checkpoint_meta_round_trips_and_reads_older_formats():
  from qsm_jax.checkpoint import FORMAT_VERSION, CheckpointMeta, IncompatibleCheckpoint  # pylint: disable=import-outside-toplevel
  meta = CheckpointMeta(env_steps=40, config=TINY_LOOP.to_dict(), num_devices=2,
                        obs_dim=4, act_dim=1, has_replay=True, format_version=FORMAT_VERSION)
  back = CheckpointMeta.from_json(json.loads(json.dumps(meta.to_json())))
  assert back == meta and back.train_config() == TINY_LOOP
  # Format 1 wrote only env_steps and config: the rest is what those runs were.
  old = CheckpointMeta.from_json({"env_steps": 40, "config": {}})
  assert (old.num_devices, old.obs_dim, old.has_replay, old.format_version) == (1, None, False, 1)
  with pytest.raises(ValueError, match="format 1, before QSMState.score_norm"):
    old.check_resumable("qsm", 1)
  old.check_resumable("sac", 1)  # SAC's state did not change
  with pytest.raises(ValueError, match="on 2 device.s.; resume it with --num_devices=2"):
    meta.check_resumable("qsm", 1)
  for bad in ({"env_steps": 1, "config": {}, "format_version": FORMAT_VERSION + 1},
              {"env_steps": 1}, [], {"config": {}, "env_steps": 1, "format_version": "2"}):
    with pytest.raises(IncompatibleCheckpoint, match="incompatible version of qsm_jax"):
      CheckpointMeta.from_json(bad, "here")
