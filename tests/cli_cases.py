"""Runs one command's main in-process for several argument lists, in this one process.

  python tests/cli_cases.py qsm_jax.cli.evaluate '[["--run_dir=...", "--episodes=0"], ...]'

Prints one JSON list: per case its exit code and what it wrote to stdout and stderr
(file descriptors 1 and 2). Each case parses its flags afresh (absl's flagsaver) and a
failure is the SystemExit the command's ``fail`` raises in-process. A process of its own
because the commands define flags of the same names (--env, --seed, ...) in absl's
global FLAGS, which the pytest workers hold for run.py's tests.
"""
import contextlib
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from absl import flags
from absl.testing import flagsaver


@contextlib.contextmanager
def captured_fds(out: dict):
  """Everything written to fds 1 and 2 inside, into out['stdout'] / out['stderr']."""
  saved = {fd: os.dup(fd) for fd in (1, 2)}
  files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
  for fd, f in files.items():
    os.dup2(f.fileno(), fd)
  try:
    yield
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, f in files.items():
      os.dup2(saved[fd], fd)
      os.close(saved[fd])
      f.seek(0)
      out["stdout" if fd == 1 else "stderr"] = f.read().decode(errors="replace")
      f.close()


def run_main(module, *args) -> int:
  """``module.main`` with these flags, parsed afresh, in this process: its exit code."""
  with flagsaver.flagsaver():
    flags.FLAGS.unparse_flags()
    flags.FLAGS([module.__name__, *args])
    try:
      module.main([module.__name__])
    except SystemExit as e:
      return e.code
  return 0


def run_cases_in_a_process(module_name: str, cases, env=None, timeout=900) -> list:
  """Starts this helper for ``module_name``'s main on each argument list in ``cases``
  (one process, ``env`` its environment); returns their outcomes (code, stdout, stderr)."""
  root = pathlib.Path(__file__).resolve().parents[1]
  result = subprocess.run([sys.executable, __file__, module_name,
                           json.dumps([list(args) for args in cases])],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=root)
  assert result.returncode == 0, result.stderr[-3000:]
  outcomes = json.loads(result.stdout.strip().splitlines()[-1])
  assert len(outcomes) == len(cases)
  return outcomes


def main():
  module = importlib.import_module(sys.argv[1])
  results = []
  for args in json.loads(sys.argv[2]):
    result = {}
    with captured_fds(result):
      result["code"] = run_main(module, *args)
    results.append(result)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
