"""Train a QSM diffusion policy (or a SAC / TD3 baseline) on a Brax env, the loop on device.

  python experiments/run.py                      # inverted_pendulum, learns in minutes on CPU
  python experiments/run.py --env=ant            # the spec's settings on ant
  python experiments/run.py --env=hopper --num_seeds=4 --M_q=2
  python experiments/run.py --sweep=M_q=1,5,20 --num_seeds=2   # 6 agents, one program
  python experiments/run.py --algo=sac --num_seeds=3          # a baseline, same loop and sizes
  python experiments/run.py --resume=runs/ant-20261127-120000   # continue a stopped run

Every flag overrides the env's preset (qsm_jax/presets.py) only when given.
"""
import os
import sys
import time

from absl import app, flags


FLAGS = flags.FLAGS
# Run layout.
flags.DEFINE_string("env", "inverted_pendulum", "Brax env name.")
flags.DEFINE_string("backend", None, "Brax backend: spring, positional, generalized, mjx "
                    "(default: per env, see qsm_jax/envs.py).")
flags.DEFINE_string("runs_dir", "runs", "Parent folder of new run folders.")
flags.DEFINE_string("run_dir", None, "Run folder (default: <runs_dir>/<env>-<time>-s<seed>).")
flags.DEFINE_string("resume", None, "Run folder to continue from its latest checkpoint; "
                    "its config.json is used (given flags must agree with it) and its "
                    "run_options.json (checkpoint_every, checkpoint_replay, max_to_keep, "
                    "num_devices; a given flag overrides the saved value).")
flags.DEFINE_integer("checkpoint_every", 50_000, "Env steps between checkpoints (0: only at the end).")
flags.DEFINE_bool("checkpoint_replay", True, "Save the replay buffer too (needed for an exact resume).")
flags.DEFINE_integer("max_to_keep", 2, "Checkpoints to keep.")
flags.DEFINE_integer("num_devices", None, "Devices to split envs, replay and batch over "
                     "(data parallel); default: every local device (every device of every "
                     "process in a multi-process run).")
# Several processes / hosts (jax.distributed).
flags.DEFINE_bool("distributed", False, "Join a multi-process run through "
                  "jax.distributed.initialize (implied by --coordinator_address or "
                  "$JAX_COORDINATOR_ADDRESS); without the flags below JAX detects the cluster "
                  "(Cloud TPU pod, SLURM, Open MPI, Kubernetes).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0's coordinator "
                    "(default: $JAX_COORDINATOR_ADDRESS or cluster detection).")
flags.DEFINE_integer("num_processes", None, "Processes in the run (default: "
                     "$JAX_NUM_PROCESSES or cluster detection).")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes-1 "
                     "(default: $JAX_PROCESS_ID or cluster detection).")
# Loop (TrainConfig).
flags.DEFINE_bool("paper", False, "QSM in the paper's form (qsm_jax/presets.py PAPER_FORM: "
                  "fixed -M_q grad_a Q with M_q 50, online critics, plain sampler) on top of "
                  "the env's preset; other flags still override it.")
flags.DEFINE_enum("algo", None, ["qsm", "sac", "td3"], "Algorithm (default qsm). The baselines "
                  "use the same loop, network widths, learning rates, gamma and tau.")
flags.DEFINE_integer("episode_length", None, "Episode time limit (env steps).")
flags.DEFINE_integer("action_repeat", None, "Action repeat.")
flags.DEFINE_integer("num_envs", None, "Parallel training envs per seed.")
flags.DEFINE_integer("num_eval_envs", None, "Evaluation episodes per evaluation.")
flags.DEFINE_integer("total_steps", None, "Env steps per seed, warm-up included (the run ends at the first chunk boundary at or after it).")
flags.DEFINE_integer("warmup_steps", None, "Random-action env steps before learning.")
flags.DEFINE_float("utd", None, "Updates per env step (utd * num_envs per vectorised step).")
flags.DEFINE_integer("batch_size", None, "Transitions per update.")
flags.DEFINE_integer("buffer_size", None, "Replay capacity per seed.")
flags.DEFINE_float("reward_scale", None, "Multiply rewards by this before storing them.")
flags.DEFINE_integer("log_every", None, "Env steps per jitted chunk (one log row each).")
flags.DEFINE_integer("eval_every", None, "Env steps between evaluations.")
flags.DEFINE_integer("seed", None, "Random seed.")
flags.DEFINE_integer("num_seeds", None, "Independent agents trained together (vmapped).")
flags.DEFINE_string("sweep", None, "Sweep one numeric hyperparameter in the same program, "
                    "e.g. M_q=1,5,20: every value is trained with each of the --num_seeds seeds.")
# QSMConfig (static).
flags.DEFINE_integer("T", None, "Diffusion steps.")
flags.DEFINE_enum("beta_schedule", None, ["vp", "cosine", "linear"], "Noise schedule.")
flags.DEFINE_bool("clip_sampler", None, "Clip to [-1, 1] after every sampler step.")
flags.DEFINE_integer("num_critics", None, "Critic ensemble size.")
flags.DEFINE_list("actor_hidden", None, "Noise model MLP widths, e.g. 512,512.")
flags.DEFINE_list("critic_hidden", None, "Critic MLP widths, e.g. 512,512.")
flags.DEFINE_list("time_hidden", None, "Time-embedding MLP widths, e.g. 128,128.")
flags.DEFINE_enum("score_scale", None, ["fixed", "batch", "running"], "Q-score target: "
                  "fixed = -M_q grad_a Q (the paper's); batch / running = that divided by a "
                  "batch / moving-average mean of |grad_a Q| (M_q then a step free of the "
                  "reward's scale).")
flags.DEFINE_float("score_norm_rate", None, "Moving-average rate of --score_scale=running.")
flags.DEFINE_enum("score_critic", None, ["online", "target"], "Critics giving grad_a Q for "
                  "the actor: the just-updated ones (the paper's) or their target copies.")
flags.DEFINE_bool("clip_denoised", None, "Sampler steps through the predicted clean action, "
                  "clipped to [-1, 1].")
# QSMHyperparams (numeric).
flags.DEFINE_float("M_q", None, "Scale of the Q-score target (the paper's alpha).")
flags.DEFINE_float("gamma", None, "Discount.")
flags.DEFINE_float("tau", None, "Polyak rate of the target critics.")
flags.DEFINE_float("actor_lr", None, "Actor learning rate (cosine-decayed).")
flags.DEFINE_float("actor_lr_decay_steps", None, "Updates over which the actor lr decays to 0.")
flags.DEFINE_float("critic_lr", None, "Critic learning rate.")
flags.DEFINE_float("target_noise", None, "Std of the noise on a' in the critic target.")
flags.DEFINE_float("exploration_noise", None, "Std of the exploration noise.")
flags.DEFINE_float("temperature", None, "Sampler noise scale.")

LOOP_FLAGS = ("algo", "backend", "episode_length", "action_repeat", "num_envs", "num_eval_envs",
              "total_steps", "warmup_steps", "utd", "batch_size", "buffer_size",
              "reward_scale", "log_every", "eval_every", "seed", "num_seeds")
QSM_FLAGS = ("T", "beta_schedule", "clip_sampler", "num_critics", "actor_hidden",
             "critic_hidden", "time_hidden", "score_scale", "score_norm_rate", "score_critic",
             "clip_denoised")
HPARAM_FLAGS = ("M_q", "gamma", "tau", "actor_lr", "actor_lr_decay_steps", "critic_lr",
                "target_noise", "exploration_noise", "temperature")


def _given(name):
  return FLAGS[name].present and FLAGS[name].value is not None


def _flag_value(name):
  value = FLAGS[name].value
  if name.endswith("_hidden"):
    return tuple(int(w) for w in value)
  return value


def parse_sweep(text):
  """'M_q=1,5,20' -> ('M_q', [1.0, 5.0, 20.0])."""
  name, _, values = text.partition("=")
  try:
    parsed = [float(v) for v in values.split(",") if v.strip()]
  except ValueError:
    parsed = []
  if not name.strip() or not parsed:
    raise ValueError(f"--sweep must look like NAME=V1,V2,... (e.g. M_q=1,5,20), got {text!r}")
  return name.strip(), parsed


def build_config(base=None):
  """TrainConfig from the env preset (or a saved config), overridden by the given flags."""
  from qsm_jax.presets import PAPER_FORM, apply_override, preset  # pylint: disable=import-outside-toplevel
  from qsm_jax.config import TrainConfig  # pylint: disable=import-outside-toplevel
  if base is None:
    settings = preset(FLAGS.env)
    settings["env"] = FLAGS.env
    settings["seed"] = 0
  else:
    settings = base
  if FLAGS.paper:
    settings = apply_override(settings, PAPER_FORM)
  settings.update({n: _flag_value(n) for n in LOOP_FLAGS if _given(n)})
  if _given("env"):
    settings["env"] = FLAGS.env
  if _given("sweep"):
    settings["sweep_name"], settings["sweep_values"] = parse_sweep(FLAGS.sweep)
  settings["qsm"] = {**settings["qsm"], **{n: _flag_value(n) for n in QSM_FLAGS if _given(n)}}
  settings["hparams"] = {**settings["hparams"],
                         **{n: _flag_value(n) for n in HPARAM_FLAGS if _given(n)}}
  return TrainConfig.from_dict({**settings, "qsm": {k: list(v) if isinstance(v, tuple) else v
                                                    for k, v in settings["qsm"].items()}})


def main(argv):
  del argv
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  from qsm_jax.runner import (  # pylint: disable=import-outside-toplevel
      SAVED_OPTIONS, NonFiniteError, RunOptions, read_run_config, resume_options, train)
  try:
    multi_process = (FLAGS.distributed or FLAGS.coordinator_address is not None
                     or bool(os.environ.get("JAX_COORDINATOR_ADDRESS")))
    if multi_process:
      if not (FLAGS.run_dir or FLAGS.resume):
        raise ValueError("a multi-process run needs --run_dir (or --resume): every process "
                         "must write to the same folder")
      from qsm_jax.parallel import initialize_distributed  # pylint: disable=import-outside-toplevel
      initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if FLAGS.resume:
      cfg = build_config(read_run_config(FLAGS.resume, "--resume").to_dict())
      run_dir = FLAGS.resume
    else:
      cfg = build_config()
      seed = cfg.seed
      run_dir = FLAGS.run_dir or os.path.join(
          FLAGS.runs_dir, f"{cfg.env}-{time.strftime('%Y%m%d-%H%M%S')}-s{seed}")
    cfg.validate()
    if FLAGS.resume:  # the run's saved options (run_options.json), unless a flag is given
      given = {n: FLAGS[n].value for n in SAVED_OPTIONS if FLAGS[n].present}
      opts, notes = resume_options(run_dir, given)
      for note in notes:
        print(note, flush=True)
    else:
      opts = RunOptions(run_dir=run_dir, **{n: FLAGS[n].value for n in SAVED_OPTIONS})
    # On --resume, train() refuses flags that contradict the saved config.json.
    train(cfg, opts, log=lambda s: print(s, flush=True))
  except (ValueError, NonFiniteError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
  except KeyboardInterrupt:
    print("interrupted: continue with --resume=<run folder> from the last checkpoint",
          file=sys.stderr, flush=True)
    sys.exit(130)


def run():
  """The qsm-train console command (experiments/run.py runs it too)."""
  app.run(main)


if __name__ == "__main__":
  run()
