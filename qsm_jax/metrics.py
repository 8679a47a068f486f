"""A run's metrics on disk: metrics.jsonl (one row per chunk) and TensorBoard events."""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Optional

import numpy as np


def _summary_writer():
  """tensorboardX's SummaryWriter (a declared dependency; brax needs it too), imported
  without torch unless torch is loaded already.

  tensorboardX imports torch whenever it is installed (to accept torch tensors, which we
  never log): 2-4 s at the start of every run on a machine with the test or bench extras.
  A None in sys.modules makes ``import torch`` raise ImportError, which tensorboardX
  catches; the entry is removed at once, so a later ``import torch`` works as usual.
  """
  if "torch" in sys.modules or "tensorboardX" in sys.modules:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    return SummaryWriter
  sys.modules["torch"] = None
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class MetricsWriter:
  """metrics.jsonl + TensorBoard; only rows up to the restored step survive a resume."""

  def __init__(self, run_dir: str, keep_up_to: Optional[int], write_files: bool = True):
    self.path = os.path.join(run_dir, "metrics.jsonl")
    self.rows = []
    self.write_files = write_files
    self.tb = None
    if keep_up_to is not None and os.path.exists(self.path):
      with open(self.path) as f:
        self.rows = [r for r in map(json.loads, f) if r["env_steps"] <= keep_up_to]
    if not write_files:  # not the main process: keep rows in memory only
      return
    with open(self.path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in self.rows)
    self.tb = _summary_writer()(os.path.join(run_dir, "tb"))

  def write(self, row: dict) -> None:
    self.rows.append(row)
    if not self.write_files:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self.tb is not None:
      step = row["env_steps"]
      for key, value in row.items():
        if isinstance(value, list):
          for i, v in enumerate(value):
            if v is not None and math.isfinite(v):
              self.tb.add_scalar(f"seed{i}/{key}", v, step)
          value = row.get(f"{key}_mean")
        if isinstance(value, (int, float)) and key != "env_steps" and math.isfinite(value):
          self.tb.add_scalar(key, value, step)
      self.tb.flush()

  def close(self) -> None:
    if self.tb is not None:
      self.tb.close()


def to_row(metrics: dict) -> dict:
  """Per-seed lists plus their mean for every metric (NaN -> None in JSON)."""
  row = {}
  for key, value in metrics.items():
    values = [float(v) for v in np.asarray(value).reshape(-1)]
    row[key] = [v if math.isfinite(v) else None for v in values]
    finite = [v for v in values if math.isfinite(v)]
    row[f"{key}_mean"] = float(np.mean(finite)) if finite else None
  return row
