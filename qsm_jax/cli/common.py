"""What the experiment scripts share: one-line errors, and how evaluate.py and render.py load a policy."""
import contextlib
import dataclasses
import io
import math
import os
import sys


# Set by run_command: the command owns this process, so fail() may end it at once.
_OWNS_PROCESS = False


def fail(message) -> None:
  """Writes ``error: <message>`` as one line on stderr and exits with status 1.

  As a command (run_command), the process ends at once (os._exit); called in-process
  (a test running a command's main), it raises SystemExit(1) instead."""
  sys.stdout.flush()
  sys.stderr.flush()
  # One write to the file descriptor, then os._exit: after a failed checkpoint restore,
  # tensorstore's threads finish the reads still in flight and print tracebacks (their
  # event loop is closed) at any moment, even in the middle of a print().
  os.write(2, f"error: {message}\n".encode())
  if _OWNS_PROCESS:
    os._exit(1)  # pylint: disable=protected-access
  raise SystemExit(1)


def run_command(main, *flag_modules) -> None:
  """``absl.app.run(main)``, with ``--help`` listing the flags ``flag_modules`` (module
  names) define: absl lists only the main module's, and a command's main module is a thin
  wrapper (experiments/*.py) or a console script."""
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  global _OWNS_PROCESS  # pylint: disable=global-statement
  _OWNS_PROCESS = True
  for module in flag_modules:
    for flag in flags.FLAGS.get_flags_for_module(module):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main)


def define_policy_flags(flags) -> None:
  """The flags evaluate.py and render.py share: which checkpoint, which env, how to act."""
  flags.DEFINE_string("run_dir", None, "Run folder, or one checkpoints/<step> folder of it.")
  flags.DEFINE_integer("step", None, "Env step of the checkpoint (default: the latest).")
  flags.DEFINE_string("env", None, "Another Brax env with the same obs/action sizes "
                      "(default: the run's env).")
  flags.DEFINE_string("backend", None, "Brax backend (default: the run's).")
  flags.DEFINE_integer("episode_length", None, "Episode time limit (default: the run's).")
  flags.DEFINE_bool("explore", False, "Add the run's exploration noise to the actions.")
  flags.DEFINE_float("temperature", None, "QSM runs: sampler noise scale (default: the "
                     "run's eval_temperature, else its temperature; 0: deterministic "
                     "sampler).")
  flags.DEFINE_integer("best_of", None, "QSM runs: noise-free actions are the best, by the "
                       "critics' Q, of this many sampler draws (default: the run's "
                       "eval_best_of; 1: one draw, the paper's policy).")
  flags.mark_flag_as_required("run_dir")


def load_for_rollouts(flag_values, agent):
  """(run, agent indices, their states, (env, env name, backend, episode length)).

  ``agent``: one index, or None for every agent of the run. Any bad input ends the
  process with a one-line error.
  """
  from qsm_jax.evaluation import make_eval_env  # pylint: disable=import-outside-toplevel
  from qsm_jax.algorithms import check_temperature  # pylint: disable=import-outside-toplevel
  from qsm_jax.loading import load_run  # pylint: disable=import-outside-toplevel
  # What Python code prints to stderr while loading is held back: after a failed restore
  # it is tensorstore's tracebacks (see fail), which must not bury the one-line error;
  # after a successful one it is passed on.
  held = io.StringIO()
  with contextlib.redirect_stderr(held):
    try:
      temperature = flag_values.temperature
      if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0, got {temperature}")
      run = load_run(flag_values.run_dir, flag_values.step)
      check_temperature(run.config.algo, flag_values.temperature)
      indices = list(range(run.config.num_agents)) if agent is None else [agent]
      agents = [run.agent(i) for i in indices]
      if flag_values.best_of is not None:
        if run.config.algo != "qsm":
          raise ValueError(f"--best_of is a setting of QSM's policy; this is a "
                           f"{run.config.algo} run")
        if flag_values.best_of < 1:
          raise ValueError(f"--best_of must be a positive integer, got {flag_values.best_of}")
        agents = [a.replace(config=dataclasses.replace(a.config, eval_best_of=flag_values.best_of))
                  for a in agents]
      env = make_eval_env(run.config, agents[0].obs_dim, agents[0].act_dim, flag_values.env,
                          flag_values.backend, flag_values.episode_length)
    except ValueError as e:
      fail(e)  # exits with stderr still redirected: late tracebacks go to `held`
  sys.stderr.write(held.getvalue())
  return run, indices, agents, env
