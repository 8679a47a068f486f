"""Full-state checkpoints with orbax: networks, optimizers, targets, envs, replay, RNG, counters.

orbax writes each checkpoint into a temporary folder and renames it when complete, so
a process killed mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

# Layout version of what ``save`` writes (state / replay / meta items, meta fields).
# A reader refuses checkpoints newer than the version it knows.
# 2: QSMState gained score_norm (the running |grad_a Q| of score_scale='running').
FORMAT_VERSION = 2


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

  def read_meta(self, step: Optional[int] = None) -> dict:
    """The JSON metadata of a checkpoint (latest by default), without its arrays."""
    step = self._step(step)
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def save(self, step: int, train_state: Any, meta: dict) -> None:
    """Saves synchronously (returns once the checkpoint is complete on disk)."""
    meta = {**meta, "has_replay": self.save_replay, "format_version": FORMAT_VERSION}
    items = {"state": ocp.args.StandardSave(_drop_empty(train_state.replace(replay=None))),
             "meta": ocp.args.JsonSave(meta)}
    if self.save_replay:
      items["replay"] = ocp.args.StandardSave(train_state.replay)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    self._manager.wait_until_finished()

  def restore(self, template: Any, step: Optional[int] = None) -> tuple[Any, dict, bool]:
    """Restores into the structure of ``template`` (a freshly initialised state).

    Returns (train_state, meta, replay_restored). Without a saved replay buffer the
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
    has_replay = bool(meta.get("has_replay"))
    items = {"state": ocp.args.StandardRestore(_drop_empty(abstract))}
    if has_replay:
      items["replay"] = ocp.args.StandardRestore(
          jax.tree.map(to_abstract, template.replay))
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    state = _restore_empty(restored["state"], abstract)
    state = state.replace(replay=restored["replay"] if has_replay else template.replay)
    return state, meta, has_replay

  def restore_arrays(self, step: Optional[int] = None) -> tuple[dict, dict]:
    """Restores the state (without replay) as nested dicts of host numpy arrays.

    Needs no template and no devices like the writer's: for readers that only need
    part of the state (e.g. the policy) on any device count. Returns (state_dict, meta).
    """
    step = self._step(step)
    shapes = self._manager.item_metadata(step)["state"]
    template = jax.tree.map(lambda x: np.empty(x.shape, x.dtype), shapes)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]

  def close(self) -> None:
    self._manager.close()
