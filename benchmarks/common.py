"""Shared pieces of the benchmarks: machine description, interleaved timing, tables."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Callable, Dict, List

import jax
import numpy as np
import torch


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def machine_info() -> dict:
  """What ran the benchmark: CPU, cores, GPU, library versions, load (shared machines)."""
  import flax  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
  return {
      "cpu": cpu_model(),
      "cpu_cores": os.cpu_count(),
      "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
      "gpu": gpu,
      "jax_backend": jax.default_backend(),
      "jax_devices": [str(d) for d in jax.devices()],
      "python": platform.python_version(),
      "jax": jax.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      "torch": torch.__version__,
      "torch_threads": torch.get_num_threads(),
      "numpy": np.__version__,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "load_avg_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
  }


def print_machine(info: dict) -> None:
  print(f"machine: {info['cpu']} | {info['cpu_cores']} cores ({info['usable_cores']} usable) | "
        f"GPU: {info['gpu'] or 'none'} | jax {info['jax']} on {info['jax_backend']} | "
        f"torch {info['torch']} ({info['torch_threads']} threads) | python {info['python']} | "
        f"load avg at start {info['load_avg_1m_at_start']}", flush=True)


def torch_device() -> torch.device:
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_sync() -> None:
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def interleaved(contenders: Dict[str, Callable[[], float]], reps: int,
                log: Callable[[str], None] = lambda s: None) -> Dict[str, List[float]]:
  """Runs every contender once per repetition, rotating the order each time.

  Each contender is a callable that measures itself and returns a rate. Side by side,
  in one process, so a slow moment of a shared machine hits everyone alike.
  """
  names = list(contenders)
  rates = {n: [] for n in names}
  for rep in range(reps):
    order = names[rep % len(names):] + names[:rep % len(names)]
    for name in order:
      rates[name].append(contenders[name]())
    log(f"  rep {rep + 1}/{reps}: " + ", ".join(f"{n} {rates[n][-1]:.3g}" for n in names))
  return rates


def median(xs: List[float]) -> float:
  return float(statistics.median(xs))


def timed(fn: Callable[[], None]) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def markdown_table(header: List[str], rows: List[List]) -> str:
  fmt = lambda v: (f"{v:.3g}" if isinstance(v, float) and abs(v) < 1000 else
                   f"{v:,.0f}" if isinstance(v, float) else str(v))
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def write_json(path: str, payload: dict) -> None:
  with open(path, "w") as f:
    json.dump(payload, f, indent=2)
  print(f"wrote {path}")
