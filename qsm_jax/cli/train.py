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

from absl import flags

from qsm_jax.cli.common import run_command
from qsm_jax.cli.config_flags import define_config_flags, given_override


FLAGS = flags.FLAGS
# Run layout.
flags.DEFINE_string("env", "inverted_pendulum", "Brax env name.")
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
flags.DEFINE_bool("paper", False, "QSM in the paper's form (qsm_jax/presets.py PAPER_FORM: "
                  "fixed -M_q grad_a Q with M_q 50, online critics, the plain 5-step DDPM sampler at "
                  "temperature 1) on top of "
                  "the env's preset; other flags still override it.")
flags.DEFINE_string("sweep", None, "Sweep one numeric hyperparameter in the same program, "
                    "e.g. M_q=1,5,20: every value is trained with each of the --num_seeds seeds.")
# Every field of TrainConfig, QSMConfig and QSMHyperparams (qsm_jax/cli/config_flags.py).
CONFIG_FLAGS = define_config_flags()


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
  settings = {**preset(FLAGS.env), "env": FLAGS.env} if base is None else base
  if FLAGS.paper:
    settings = apply_override(settings, PAPER_FORM)
  settings = apply_override(settings, given_override(CONFIG_FLAGS))
  if FLAGS["env"].present:
    settings["env"] = FLAGS.env
  if FLAGS.sweep is not None:
    settings["sweep_name"], settings["sweep_values"] = parse_sweep(FLAGS.sweep)
  return TrainConfig.from_dict(settings)


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
  run_command(main, __name__, "qsm_jax.cli.config_flags")


if __name__ == "__main__":
  run()
