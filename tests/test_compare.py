"""experiments/compare.py and experiments/brax_sac.py (qsm_jax/cli/compare.py, brax_sac.py): the summary's numbers (worked out by
hand), the plot, which runs a continued comparison skips / resumes / reruns, one-line
errors, and Brax's SAC trainer end to end on Brax's trivial test env ("fast")."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from qsm_jax import plots
from qsm_jax.cli import brax_sac, compare, report
from qsm_jax.presets import preset_config

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def write_run(run_dir, rows, config=None, checkpoint=False):
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  if config is not None:
    with open(os.path.join(run_dir, "config.json"), "w") as f:
      json.dump(config, f)
  if checkpoint:
    os.makedirs(os.path.join(run_dir, "checkpoints", "2000"), exist_ok=True)
  return run_dir


# Algo "a": 2 seeds, a chunk row without an eval, a missing (NaN) value at the end.
ROWS_A = [
    {"env_steps": 1000, "wall_s": 10.0, "chunk_s": 4.0, "eval_return": [10.0, 20.0]},
    {"env_steps": 1500, "wall_s": 12.0, "chunk_s": 1.0},
    {"env_steps": 2000, "wall_s": 20.0, "chunk_s": 5.0, "eval_return": [50.0, 30.0]},
    {"env_steps": 3000, "wall_s": 30.0, "chunk_s": 6.0, "eval_return": [40.0, None]},
]
# Algo "b": 3 seeds, an eval of the untrained policy at step 0 (as Brax logs one): plotted,
# not counted, though it is the highest.
ROWS_B = [
    {"env_steps": 0, "wall_s": 1.0, "chunk_s": 0.0, "eval_return": [200.0, 200.0, 200.0]},
    {"env_steps": 1000, "wall_s": 5.0, "chunk_s": 2.0, "eval_return": [60.0, 90.0, 120.0]},
    {"env_steps": 2000, "wall_s": 9.0, "chunk_s": 2.0, "eval_return": [30.0, 60.0, 90.0]},
]


@pytest.fixture
def two_runs(tmp_path):
  return {"a": write_run(str(tmp_path / "a"), ROWS_A), "b": write_run(str(tmp_path / "b"), ROWS_B)}


def test_summarise_numbers_worked_out_by_hand(two_runs):
  s = report.summarise(two_runs, fraction=0.9)
  a, b = s["algos"]["a"], s["algos"]["b"]
  # a: final [40, NaN] -> 40 +- 0; bests [50, 30] -> 40 +- 10; mean curve [15, 40, 40].
  assert (a["num_seeds"], a["evals"], a["env_steps"]) == (2, 3, 3000)
  assert a["final_returns"] == [40.0, None]
  assert a["final_return_mean"] == 40.0 and a["final_return_std"] == 0.0
  assert a["best_returns"] == [50.0, 30.0]
  assert a["best_return_mean"] == 40.0 and a["best_return_std"] == 10.0
  assert (a["peak_mean_return"], a["peak_mean_env_steps"]) == (40.0, 2000)
  assert (a["wall_s"], a["train_s"]) == (30.0, 16.0)   # last row; 4 + 1 + 5 + 6
  # b: final [30, 60, 90] -> 60 +- sqrt(600); bests [60, 90, 120] -> 90 +- sqrt(600).
  assert b["final_return_mean"] == 60.0
  assert b["final_return_std"] == pytest.approx(math.sqrt(600))
  assert b["best_return_mean"] == 90.0
  assert b["best_return_std"] == pytest.approx(math.sqrt(600))
  assert (b["peak_mean_return"], b["peak_mean_env_steps"]) == (90.0, 1000)
  assert (b["wall_s"], b["train_s"], b["evals"]) == (9.0, 4.0, 2)
  # Threshold: 0.9 * the best peak of all (90) = 81: b reaches it at 1000 (5 s), a never.
  assert s["threshold"] == pytest.approx(81.0)
  assert (b["steps_to_threshold"], b["wall_s_to_threshold"]) == (1000, 5.0)
  assert a["steps_to_threshold"] is None and a["wall_s_to_threshold"] is None
  # 0.4 * 90 = 36: a's mean curve first reaches it at 2000 (its 2nd eval, 20 s).
  s = report.summarise(two_runs, fraction=0.4)
  assert (s["algos"]["a"]["steps_to_threshold"], s["algos"]["a"]["wall_s_to_threshold"]) == (2000, 20.0)
  json.dumps(s)  # JSON-able (no NaN, no numpy scalars)


def test_wall_clock_adds_up_resumed_sessions(tmp_path):
  # A run killed after 2000 steps (20 s) and resumed: the new session's clock starts at 0.
  rows = [{"env_steps": 1000, "wall_s": 10.0, "eval_return": [1.0]},
          {"env_steps": 2000, "wall_s": 20.0, "eval_return": [2.0]},
          {"env_steps": 3000, "wall_s": 8.0, "eval_return": [30.0]},
          {"env_steps": 4000, "wall_s": 12.0, "eval_return": [4.0]}]
  assert report.total_wall_s(rows) == [10.0, 20.0, 28.0, 32.0]
  s = report.summarise({"r": write_run(str(tmp_path / "r"), rows)})["algos"]["r"]
  assert (s["wall_s"], s["steps_to_threshold"], s["wall_s_to_threshold"]) == (32.0, 3000, 28.0)


def test_report_writes_plot_table_and_json(two_runs, tmp_path, monkeypatch):
  pytest.importorskip("matplotlib")
  lines = []
  s = report.write_report(str(tmp_path), two_runs, "inverted_pendulum", log=lines.append)
  assert os.path.getsize(tmp_path / "curves.png") > 10_000
  with open(tmp_path / "summary.json") as f:
    saved = json.load(f)["algos"]
  assert saved["b"]["best_return_mean"] == s["algos"]["b"]["best_return_mean"]
  assert saved["b"]["run_dir"] == str(tmp_path / "b")  # outside the working directory
  monkeypatch.chdir(tmp_path)  # inside it: relative, so a committed report names no machine
  assert report.summarise(two_runs)["algos"]["b"]["run_dir"] == "b"
  table = (tmp_path / "summary.md").read_text()
  assert "| a | 2 | 3,000 | 40.0 ± 0.0 | 40.0 ± 10.0 | 40.0 @ 2,000 | - | - | 30s | 16s |" in table
  assert "| b | 3 | 2,000 | 60.0 ± 24.5 | 90.0 ± 24.5 | 90.0 @ 1,000 | 1,000 | 5.0s | 9.0s | 4.0s |" in table
  assert table in lines[-1]  # printed at the end
  empty = report.load_curve(write_run(str(tmp_path / "e"), []))[:2]
  assert not plots.plot_curves({"empty": empty}, str(tmp_path / "none.png"), "t")


def test_merge_seeds_aligns_by_eval_index():
  seed0 = [{"env_steps": 0, "wall_s": 2.0, "chunk_s": 0.0, "eval_return": 1.0},
           {"env_steps": 100, "wall_s": 5.0, "chunk_s": 3.0, "eval_return": 4.0,
            "critic_loss": 0.5}]
  seed1 = [{"env_steps": 0, "wall_s": 1.0, "chunk_s": 0.0, "eval_return": 3.0},
           {"env_steps": 104, "wall_s": 4.0, "chunk_s": 2.5, "eval_return": None,
            "critic_loss": 1.5}]
  rows = brax_sac.merge_seeds([seed0, seed1])
  assert rows[0]["env_steps"] == 0 and "env_steps_per_seed" not in rows[0]
  assert rows[0]["eval_return"] == [1.0, 3.0] and rows[0]["eval_return_mean"] == 2.0
  assert rows[0]["wall_s"] == 3.0 and rows[0]["wall_s_per_seed"] == [2.0, 1.0]
  assert rows[1]["env_steps"] == 102 and rows[1]["env_steps_per_seed"] == [100, 104]
  assert rows[1]["eval_return"] == [4.0, None] and rows[1]["eval_return_mean"] == 4.0
  assert rows[1]["critic_loss_mean"] == 1.0 and rows[1]["chunk_s"] == 5.5


@pytest.fixture
def cfg():
  return preset_config("inverted_pendulum", {"total_steps": 3000, "num_seeds": 2,
                                             "qsm": {"critic_hidden": (32, 32)}})


def test_brax_settings_follow_the_train_config(cfg):
  assert cfg.num_envs == 4 and cfg.qsm.actor_hidden == (64, 64)  # the preset's
  assert cfg.qsm.critic_hidden == (32, 32)                        # the override
  s = brax_sac.brax_settings(cfg, seed=7)
  assert s["num_timesteps"] == 3000 and s["num_envs"] == 4 and s["seed"] == 7
  assert s["min_replay_size"] == cfg.warmup_steps and s["max_replay_size"] == cfg.replay_capacity
  assert s["grad_updates_per_step"] == cfg.updates_per_iteration == 4
  assert s["learning_rate"] == cfg.hparams.critic_lr and s["discounting"] == cfg.hparams.gamma
  assert s["normalize_observations"] is False and s["deterministic_eval"] is True
  # Evals: step 0, then after the 1000-step prefill every ceil(2000 / (1 * 4)) * 4 = 2000
  # (round(2000 / 2000) = 1 eval after the initial one).
  assert brax_sac.eval_schedule(cfg) == (2, 2000, [0, 3000])
  import dataclasses
  longer = dataclasses.replace(cfg, total_steps=20_000, eval_every=2_000)
  # round(19000 / 2000) = 10 evals after the first; ceil(19000 / 40) = 475 steps of 4 envs.
  num_evals, epoch, steps = brax_sac.eval_schedule(longer)
  assert (num_evals, epoch, steps[:3], steps[-1]) == (11, 1900, [0, 2900, 4800], 20_000)
  repeat = dataclasses.replace(cfg, action_repeat=2)
  assert brax_sac.brax_settings(repeat, 0)["num_timesteps"] == 6000  # Brax counts physics steps


def test_network_factory_uses_actor_and_critic_widths():
  import jax
  nets = brax_sac._network_factory((16, 16), (8,))(  # pylint: disable=protected-access
      observation_size=3, action_size=2, preprocess_observations_fn=lambda x, y: x)
  kernels = lambda p: [v["kernel"].shape for v in jax.tree.leaves(
      p, is_leaf=lambda x: isinstance(x, dict) and "kernel" in x)]
  policy = nets.policy_network.init(jax.random.PRNGKey(0))
  q = nets.q_network.init(jax.random.PRNGKey(0))
  assert kernels(policy) == [(3, 16), (16, 16), (16, 4)]  # mean and std of 2 actions
  assert kernels(q) == [(5, 8), (8, 1), (5, 8), (8, 1)]    # twin critics on (s, a)


def test_plan_skips_complete_resumes_checkpointed_and_reruns_partial(cfg, tmp_path):
  out = str(tmp_path)
  qsm_config = compare.algo_config(cfg, "qsm").to_dict()
  done = [{"env_steps": 1000, "chunk_s": 1.0}, {"env_steps": 3000, "eval_return": [1.0, 2.0]}]
  half = done[:1]
  actions = lambda algos, **kw: [(a, act) for a, _, act, _ in compare.plan(out, algos, cfg, **kw)]

  assert actions(["qsm", "brax_sac"]) == [("qsm", "run"), ("brax_sac", "run")]
  write_run(os.path.join(out, "qsm"), done, qsm_config)
  brax_config = brax_sac.run_config(cfg, [0, 1])
  write_run(os.path.join(out, "brax_sac"), done, brax_config)
  assert actions(["qsm", "brax_sac"]) == [("qsm", "skip"), ("brax_sac", "skip")]
  assert actions(["qsm", "brax_sac"], overwrite=True) == [("qsm", "rerun"), ("brax_sac", "rerun")]
  # A longer request: the qsm run resumes from its checkpoint, brax_sac starts again.
  import dataclasses
  longer = dataclasses.replace(cfg, total_steps=5000)
  write_run(os.path.join(out, "qsm"), done, qsm_config, checkpoint=True)
  assert [a for _, _, a, _ in compare.plan(out, ["qsm", "brax_sac"], longer)] == ["resume", "rerun"]
  # Unfinished: resume with a checkpoint, else start again; a row of fewer seeds is unfinished.
  write_run(os.path.join(out, "qsm"), half, qsm_config, checkpoint=True)
  write_run(os.path.join(out, "brax_sac"), [{"env_steps": 3000, "eval_return": [1.0]}],
            brax_config)
  assert actions(["qsm", "brax_sac"]) == [("qsm", "resume"), ("brax_sac", "rerun")]
  write_run(os.path.join(out, "td3x"), half, qsm_config)
  assert compare.run_status(os.path.join(out, "td3x"), "qsm", cfg)[0] == "partial"
  # A run saved before a config field existed (here critic_layer_norm): it ran with the
  # field's default, so it still counts as the same settings.
  older = json.loads(json.dumps(qsm_config))
  del older["qsm"]["critic_layer_norm"]
  write_run(os.path.join(out, "older"), done, older)
  assert compare.run_status(os.path.join(out, "older"), "qsm", cfg)[0] == "complete"
  older["qsm"]["critic_layer_norm"] = True  # a saved value that differs still does
  write_run(os.path.join(out, "older"), done, older)
  assert compare.run_status(os.path.join(out, "older"), "qsm", cfg) == (
      "mismatch", "qsm.critic_layer_norm: saved True != requested False")
  # Other settings: an error naming them (before anything runs), unless --overwrite. Brax
  # ignores QSM-only settings (M_q) but not the widths it was given.
  m_q = dataclasses.replace(cfg, hparams=cfg.hparams.replace(M_q=2.0))
  with pytest.raises(compare.CompareError, match=r"\(hparams.M_q: saved 1.0 != requested 2.0\); "
                     "pass --overwrite"):
    compare.plan(out, ["brax_sac", "qsm"], m_q)
  write_run(os.path.join(out, "brax_sac"), done, brax_config)
  assert compare.run_status(os.path.join(out, "brax_sac"), "brax_sac", m_q)[0] == "complete"
  wide = dataclasses.replace(cfg, qsm=dataclasses.replace(cfg.qsm, critic_hidden=(64, 64)))
  assert compare.run_status(os.path.join(out, "brax_sac"), "brax_sac", wide) == (
      "mismatch", "critic_hidden: saved [32, 32] != requested [64, 64]")


def test_parse_algos_errors():
  assert compare.parse_algos("qsm, brax_sac") == ["qsm", "brax_sac"]
  for text, message in (("qsm,foo", "unknown algorithm(s) 'foo'"), ("", "no algorithm"),
                        ("qsm,qsm", "qsm given more than once")):
    with pytest.raises(compare.CompareError, match=message.replace("(", r"\(").replace(")", r"\)")):
      compare.parse_algos(text)


def _script(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "compare.py"), *args],
                        capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_cli_plot_only_and_one_line_errors(two_runs, tmp_path):
  out = os.path.dirname(two_runs["a"])
  proc = _script(f"--out={out}", "--plot_only", "--algos=b,a")
  assert proc.returncode == 0, proc.stderr
  assert os.path.exists(os.path.join(out, "summary.md"))
  assert "| b | 3 | 2,000 |" in proc.stdout
  with open(os.path.join(out, "summary.json")) as f:
    assert list(json.load(f)["algos"]) == ["b", "a"]
  proc = _script(f"--out={tmp_path / 'new'}", "--algos=qsm,dqn", "--total_steps=100")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith("error: --algos: unknown algorithm(s) 'dqn'")
  assert not os.path.exists(tmp_path / "new" / "qsm")


def test_brax_sac_runs_on_brax_fast_env(tmp_path, monkeypatch):
  # Brax's trivial "fast" env compiles in seconds (inverted_pendulum takes over a minute on
  # 2 cores); qsm_jax's env list leaves it out, so it is let in for this test.
  import qsm_jax.envs
  names = qsm_jax.envs.env_names()
  monkeypatch.setattr(qsm_jax.envs, "env_names", lambda: names + ["fast"])
  cfg = preset_config("fast", dict(
      total_steps=96, warmup_steps=32, num_envs=8, eval_every=32, num_eval_envs=2,
      episode_length=16, batch_size=16, buffer_size=256, num_seeds=1, seed=3,
      qsm={"actor_hidden": (8,), "critic_hidden": (4,)}))
  lines = []
  rows = brax_sac.run_brax_sac(cfg, str(tmp_path), log=lines.append)
  _, _, expected_steps = brax_sac.eval_schedule(cfg)
  assert expected_steps == [0, 64, 96]
  assert [r["env_steps"] for r in rows] == expected_steps
  for r in rows:
    assert len(r["eval_return"]) == 1 and np.isfinite(r["eval_return_mean"])
    assert r["eval_episode_length_mean"] == 16  # fast never terminates: the time limit
  assert rows[-1]["critic_loss"][0] is not None and np.isfinite(rows[-1]["alpha_mean"])
  assert rows[-1]["wall_s"] >= rows[0]["wall_s"] > 0
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line) for line in f] == rows
  with open(tmp_path / "config.json") as f:
    config = json.load(f)
  assert config["algo"] == "brax_sac" and config["brax_seeds"] == [3]
  assert config["brax_sac"]["num_evals"] == 3 and config["brax_sac"]["critic_hidden"] == [4]
  assert sum("step        96/96" in line for line in lines) == 1  # progress per eval


def test_reward_scale_report_by_hand(tmp_path):
  out = str(tmp_path)
  finals = {("qsm", 0.1): [90.0, 110.0], ("qsm", 10.0): [80.0, 80.0],
            ("qsm_paper", 0.1): [100.0, 100.0], ("qsm_paper", 10.0): [10.0, 30.0]}
  for (algo, scale), final in finals.items():
    write_run(os.path.join(report.reward_scale_dir(out, scale), algo),
              [{"env_steps": 1000, "wall_s": 1.0, "chunk_s": 1.0, "eval_return": final}])
  s = report.write_reward_scale_report(out, [0.1, 10.0], ["qsm", "qsm_paper"], "toy",
                                        log=lambda m: None)
  assert s["qsm"]["final_means"] == [100.0, 80.0] and s["qsm"]["final_stds"] == [10.0, 0.0]
  assert s["qsm"]["worst_over_best"] == pytest.approx(0.8)
  assert s["qsm_paper"]["worst_over_best"] == pytest.approx(0.2)
  table = (tmp_path / "reward_scale.md").read_text()
  assert "| qsm | 100.0 ± 10.0 | 80.0 ± 0.0 | 0.80 |" in table
  assert json.loads((tmp_path / "reward_scale.json").read_text())["env"] == "toy"
  # A scale without a finished run: no ratio.
  assert report.reward_scale_summary(out, [0.1, 1.0], ["qsm"])["qsm"]["worst_over_best"] is None
  for bad in (["0"], ["-1"], ["x"], ["1", "1"], ["inf"]):
    with pytest.raises(compare.CompareError, match="--reward_scales"):
      compare.parse_scales(bad)


def test_qsm_paper_is_qsm_in_the_papers_form():
  cfg = preset_config("inverted_pendulum")
  assert cfg.qsm.score_scale == "running" and cfg.hparams.M_q == 1.0
  assert cfg.qsm.critic_reward_norm == "shrink" and cfg.qsm.eval_best_of == 10
  assert cfg.qsm.target_temperature == 0.0
  assert cfg.qsm.ascent_sampler and cfg.hparams.temperature == 0.25
  paper = compare.algo_config(cfg, "qsm_paper")
  assert paper.algo == "qsm" and paper.qsm.score_scale == "fixed" and paper.hparams.M_q == 50.0
  assert not paper.qsm.ascent_sampler and paper.hparams.temperature == 1.0
  assert not paper.qsm.clip_denoised and paper.qsm.score_critic == "online"
  assert paper.qsm.critic_reward_norm == "none"
  assert paper.qsm.eval_best_of == paper.qsm.act_best_of == 1
  assert paper.qsm.target_temperature is None and paper.qsm.eval_temperature is None
  # Everything else is the comparison's: sizes, budget, seeds.
  assert (paper.qsm.actor_hidden, paper.total_steps, paper.num_envs) == (
      cfg.qsm.actor_hidden, cfg.total_steps, cfg.num_envs)
  assert compare.parse_algos("qsm,qsm_paper,sac") == ["qsm", "qsm_paper", "sac"]


def test_the_papers_form_resets_every_algorithm_field_of_qsm():
  """From a config with every QSM option moved off the paper's value (the knobs the
  project measured: T 20 cosine, a LayerNorm critic, ...), the paper's form gives
  QSMConfig's defaults (the paper's) in every field but the network sizes."""
  import dataclasses  # pylint: disable=import-outside-toplevel
  from qsm_jax.config import QSMConfig  # pylint: disable=import-outside-toplevel
  from qsm_jax.presets import NETWORK_SIZES, PAPER_FORM  # pylint: disable=import-outside-toplevel
  paper_fields = set(PAPER_FORM["qsm"])
  algorithm_fields = {f.name for f in dataclasses.fields(QSMConfig)} - set(NETWORK_SIZES)
  assert paper_fields == algorithm_fields  # derived from QSMConfig's fields
  moved = dict(T=20, beta_schedule="cosine", clip_sampler=False, num_critics=3,
               critic_layer_norm=True, adam_b1=0.5, adam_b2=0.9, adam_eps=1e-5,
               score_scale="batch", score_norm_rate=0.1, score_critic="target",
               clip_denoised=True, score_sigma_weight=True, critic_reward_norm="running",
               eval_best_of=4, act_best_of=2, eval_temperature=0.0, target_temperature=0.0,
               spread_target=0.1, spread_rate=0.01, ascent_sampler=False, actor_hidden=(8, 8))
  # The two sampler steps exclude each other: the second config moves the other one.
  moved_ascent = {**moved, "clip_denoised": False, "ascent_sampler": True}
  defaults = QSMConfig()
  off_default = set()
  for fields in (moved, moved_ascent):
    cfg = preset_config("hopper", {"qsm": fields})
    paper = compare.algo_config(cfg, "qsm_paper").qsm
    for name in algorithm_fields:
      assert getattr(paper, name) == getattr(defaults, name), name
      if getattr(cfg.qsm, name) != getattr(defaults, name):
        off_default.add(name)
  assert off_default == algorithm_fields  # the control: each field moved in one of them
  assert paper.actor_hidden == (8, 8)  # the comparison's size
