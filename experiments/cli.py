"""What the experiment scripts share: how they fail."""
import os
import sys


def fail(message) -> None:
  """Prints ``error: <message>`` as one line on stderr and exits with status 1."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.stdout.flush()
  # os._exit: after a failed checkpoint restore, orbax's background threads print
  # tracebacks while the interpreter shuts down; there is nothing else to clean up.
  os._exit(1)  # pylint: disable=protected-access
