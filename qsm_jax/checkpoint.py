"""Full-state checkpoints with orbax: networks, optimizers, targets, envs, replay, RNG, counters.

orbax writes each checkpoint into a temporary folder and renames it when complete, so
a process killed mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Optional

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

# Layout version of what ``save`` writes (state / replay / meta items, meta fields).
# A reader refuses checkpoints newer than the version it knows.
# 2: QSMState gained score_norm (the running |grad_a Q| of score_scale='running').
# 3: QSMState gained reward_norm (the running |r| of critic_reward_norm 'running' and 'shrink').
# 4: QSMState gained log_m_q_gain (the spread controller's factor on M_q).
FORMAT_VERSION = 4
# State leaves added in a format after 2, as (format, attribute path); each starts at 0.
# A checkpoint of an older format restores without them and sets them to 0: what the
# runs that wrote it had, since they did not have the option.
ADDED_LEAVES = ((3, ("agent", "reward_norm")), (4, ("agent", "log_m_q_gain")))


class IncompatibleCheckpoint(ValueError):
  """A checkpoint this version of qsm_jax cannot read (newer format, or no run config)."""


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
  """What a checkpoint says about itself: its "meta" item, JSON, written and read only here.

  Fields that older formats lack take the values those checkpoints implied.

  Attributes:
    env_steps: env steps per agent when it was written (also the checkpoint's step).
    config: the run's TrainConfig as ``to_dict`` (``train_config`` checks and builds it).
    num_devices, num_processes: the data-parallel layout that wrote it (a resume needs
      the same device count; readers of the agents take any).
    obs_dim, act_dim: the env's sizes (None in checkpoints written before they were
      recorded: ask the env).
    has_replay: whether the replay buffer was saved (needed for an exact resume).
    format_version: FORMAT_VERSION of the writer (1 before it was recorded).
  """
  env_steps: int
  config: dict
  num_devices: int = 1
  num_processes: int = 1
  obs_dim: Optional[int] = None
  act_dim: Optional[int] = None
  has_replay: bool = False
  format_version: int = 1

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: Any, source: str = "the checkpoint") -> "CheckpointMeta":
    """Reads a saved "meta" item; IncompatibleCheckpoint for one this version cannot read."""
    version = d.get("format_version", 1) if isinstance(d, dict) else None
    if (not isinstance(version, int) or version > FORMAT_VERSION or "config" not in d
        or "env_steps" not in d):
      raise IncompatibleCheckpoint(
          f"{source} was written by an incompatible version of qsm_jax (format {version!r}; "
          f"this version reads format {FORMAT_VERSION})")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})

  def train_config(self, source: str = "the checkpoint"):
    """The run's TrainConfig, checked field by field (ValueError naming the field)."""
    from qsm_jax.config import TrainConfig  # pylint: disable=import-outside-toplevel
    return TrainConfig.from_saved(self.config, f"{source}: the saved config")

  def check_resumable(self, algo: str, num_devices: int) -> None:
    """ValueError (one line) unless a run of ``algo`` on ``num_devices`` can continue it."""
    if algo == "qsm" and self.format_version < 2:
      raise ValueError("the checkpoint was written by an older qsm_jax (checkpoint format "
                       f"{self.format_version}, before QSMState.score_norm) and cannot be "
                       "resumed; load_policy and evaluate.py still read it")
    if self.num_devices != num_devices:
      raise ValueError(f"the checkpoint was written by a run on {self.num_devices} "
                       f"device(s); resume it with --num_devices={self.num_devices}")


def _has_path(tree: Any, path: tuple) -> bool:
  for name in path:
    if not hasattr(tree, name):
      return False
    tree = getattr(tree, name)
  return True


def _zeros_like(x: Any) -> Any:
  """Zeros of ``x``'s shape and dtype, with its sharding if it is an abstract global array."""
  zeros = np.zeros(x.shape, x.dtype)
  sharding = getattr(x, "sharding", None)
  if isinstance(x, jax.ShapeDtypeStruct) and sharding is not None:
    return jax.make_array_from_callback(x.shape, sharding, lambda index: zeros[index])
  return zeros


def _size(x) -> int:
  return int(np.prod(x.shape))


def _drop_empty(tree: Any) -> Any:
  """Zero-size leaves (MJX data has some, e.g. ``act`` without stateful actuators) as
  None: orbax refuses to save zero-size arrays, and they hold nothing to save."""
  return jax.tree.map(lambda x: None if _size(x) == 0 else x, tree)


def _restore_empty(restored: Any, template: Any) -> Any:
  """``restored`` with the zero-size leaves of ``template`` put back (as zeros)."""
  return jax.tree.map(lambda t, r: np.zeros(t.shape, t.dtype) if _size(t) == 0 else r,
                      template, restored)


class Checkpointer:
  """Saves and restores a (seed-batched) ``TrainState`` plus JSON metadata.

  Args:
    directory: checkpoint folder (made absolute: orbax needs absolute paths).
    max_to_keep: how many recent checkpoints to keep.
    save_replay: include the replay buffer (needed for an exact resume; it can be large).
  """

  def __init__(self, directory: str, max_to_keep: int = 2, save_replay: bool = True):
    self.directory = os.path.abspath(directory)
    self.save_replay = save_replay
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        # Named handlers let a reader see an item's array shapes before restoring it.
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "replay": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def _step(self, step: Optional[int]) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    return step

  def read_meta(self, step: Optional[int] = None) -> CheckpointMeta:
    """The metadata of a checkpoint (latest by default), without its arrays."""
    step = self._step(step)
    raw = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return CheckpointMeta.from_json(raw["meta"], f"the checkpoint {self.directory}/{step}")

  def save(self, step: int, train_state: Any, meta: CheckpointMeta) -> None:
    """Saves synchronously (returns once the checkpoint is complete on disk)."""
    meta = dataclasses.replace(meta, has_replay=self.save_replay, format_version=FORMAT_VERSION)
    items = {"state": ocp.args.StandardSave(_drop_empty(train_state.replace(replay=None))),
             "meta": ocp.args.JsonSave(meta.to_json())}
    if self.save_replay:
      items["replay"] = ocp.args.StandardSave(train_state.replay)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    self._manager.wait_until_finished()

  def restore(self, template: Any, step: Optional[int] = None) -> tuple[Any, CheckpointMeta]:
    """Restores into the structure of ``template`` (a freshly initialised state).

    Returns (train_state, meta). Without a saved replay buffer (``meta.has_replay``) the
    template's (empty) buffer is kept.
    """
    step = self._step(step)
    # Host (numpy) templates restore as numpy; device arrays and abstract arrays
    # (jax.ShapeDtypeStruct) restore with their sharding.
    to_abstract = lambda x: (x if isinstance(x, (np.ndarray, jax.ShapeDtypeStruct))
                             else ocp.utils.to_shape_dtype_struct(x))
    abstract = jax.tree.map(to_abstract, template.replace(replay=None))
    # The metadata says whether the replay buffer was saved (a fresh manager cannot tell
    # from orbax's item metadata alone).
    meta = self.read_meta(step)
    has_replay = meta.has_replay
    missing = [path for version, path in ADDED_LEAVES
               if meta.format_version < version and _has_path(abstract, path)]
    target = _drop_empty(abstract)
    if missing:  # restore as a state dict without those leaves, then set them to 0
      target = flax.serialization.to_state_dict(target)
      for path in missing:
        functools.reduce(lambda d, k: d[k], path[:-1], target).pop(path[-1])
    items = {"state": ocp.args.StandardRestore(target)}
    if has_replay:
      items["replay"] = ocp.args.StandardRestore(
          jax.tree.map(to_abstract, template.replay))
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    state = restored["state"]
    if missing:
      for path in missing:
        functools.reduce(lambda d, k: d[k], path[:-1], state)[path[-1]] = jax.tree.map(
            _zeros_like, functools.reduce(getattr, path, abstract))
      state = flax.serialization.from_state_dict(_drop_empty(abstract), state)
    state = _restore_empty(state, abstract)
    state = state.replace(replay=restored["replay"] if has_replay else template.replay)
    return state, meta

  def restore_arrays(self, step: Optional[int] = None) -> tuple[dict, CheckpointMeta]:
    """Restores the state (without replay) as nested dicts of host numpy arrays.

    Needs no template and no devices like the writer's: for readers that only need
    part of the state (e.g. the policy) on any device count. Returns (state_dict, meta);
    IncompatibleCheckpoint (before any array is read) for a format it cannot read.
    """
    step = self._step(step)
    meta = self.read_meta(step)
    shapes = self._manager.item_metadata(step)["state"]
    template = jax.tree.map(lambda x: np.empty(x.shape, x.dtype), shapes)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(template)))
    return restored["state"], meta

  def close(self) -> None:
    self._manager.close()
