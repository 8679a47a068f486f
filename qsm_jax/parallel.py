"""Where a run's devices are: one device, several local ones, or several processes (hosts).

A data-parallel run maps one device's program over every device with ``jax.pmap``
(devices outside, seeds inside): agents replicated, envs and replay buffer split, and
``qsm_update``'s ``pmean`` over the ``devices`` axis spans every process. Each process
feeds and reads its own devices' rows (leading axis = its local device count); for a
checkpoint those rows become one global ``jax.Array`` per leaf, sharded over all
devices, so orbax writes each process's shards itself (multi-process checkpoints).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "devices"


def map_seeds(f: Callable) -> Callable:
  """``jax.vmap(f)`` over the leading (seed) axis of every argument and result, except
  that one seed calls ``f`` directly. Tracing the batching rules of a run's nested
  scans is about a quarter of its start-up (a tiny single-seed run: 19.4-20.9 s of CPU
  with vmap, 14.5-15.6 s without), paid by every single-seed run for nothing."""
  batched = jax.vmap(f)

  def mapped(*args):
    if jax.tree.leaves(args)[0].shape[0] != 1:
      return batched(*args)
    out = f(*jax.tree.map(lambda x: x[0], args))
    return jax.tree.map(lambda x: x[None], out)
  return mapped


def _local_rows(x) -> np.ndarray:
  """This process's rows of a mapped array, on the host (leading axis: local devices).

  With several processes a pmap result is a global array that no process can index
  whole; its addressable shards are this process's rows.
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards])
  return np.asarray(x)


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> None:
  """``jax.distributed.initialize``, before anything else touches a device.

  Unset arguments come from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
  ``JAX_PROCESS_ID``, and otherwise from JAX's own cluster detection (Cloud TPU pods,
  SLURM, Open MPI, Kubernetes). On CPU, processes reduce through JAX's gloo collectives.
  """
  env_int = lambda name: int(os.environ[name]) if os.environ.get(name) else None
  num_processes = num_processes if num_processes is not None else env_int("JAX_NUM_PROCESSES")
  process_id = process_id if process_id is not None else env_int("JAX_PROCESS_ID")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


@dataclasses.dataclass(frozen=True)
class DeviceLayout:
  """The devices of a run and how host values move to and from them.

  Attributes:
    devices: every device of the run, all processes, in pmap order.
    local_devices: this process's share of ``devices``.
  """
  devices: tuple
  local_devices: tuple

  @classmethod
  def create(cls, num_devices: Optional[int] = None) -> "DeviceLayout":
    """Every device of every process, or the first ``num_devices`` local ones.

    Raises ValueError for a device count this process cannot provide.
    """
    if jax.process_count() > 1:
      if num_devices not in (None, jax.device_count()):
        raise ValueError(f"--num_devices ({num_devices}) must be left out or be all "
                         f"{jax.device_count()} devices of the {jax.process_count()} processes "
                         "in a multi-process run")
      devices = tuple(jax.devices())
    else:
      num_devices = num_devices or jax.local_device_count()
      if not 1 <= num_devices <= jax.local_device_count():
        raise ValueError(f"--num_devices ({num_devices}) must be between 1 and the "
                         f"{jax.local_device_count()} local devices")
      devices = tuple(jax.local_devices()[:num_devices])
    local = tuple(d for d in devices if d.process_index == jax.process_index())
    return cls(devices=devices, local_devices=local)

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def parallel(self) -> bool:
    return self.num_devices > 1

  @property
  def axis_name(self) -> Optional[str]:
    return AXIS if self.parallel else None

  @property
  def is_main_process(self) -> bool:
    """Only the main process writes logs, metrics and plots."""
    return jax.process_index() == 0

  def map(self, f: Callable, **kwargs) -> Callable:
    """vmap over seeds (``map_seeds``), then pmap over devices (or jit on one device)."""
    if not self.parallel:
      return jax.jit(map_seeds(f), **kwargs)
    return jax.pmap(map_seeds(f), axis_name=AXIS, devices=self.devices, **kwargs)

  def replicate(self, x) -> Any:
    """The same host values (a pytree) on each local device (leading axis: local devices)."""
    if not self.parallel:
      return x
    return jax.tree.map(
        lambda v: np.broadcast_to(np.asarray(v), (len(self.local_devices), *np.shape(v))), x)

  def host(self, tree) -> Any:
    """A mapped result on the host: this process's rows (leading axis: local devices)."""
    return jax.tree.map(_local_rows, tree) if self.parallel else jax.device_get(tree)

  def first(self, tree) -> Any:
    """The first local device's copy of a replicated result, on the host."""
    if not self.parallel:
      return jax.device_get(tree)
    return jax.tree.map(lambda x: _local_rows(x)[0], tree)

  def _sharding(self) -> NamedSharding:
    return NamedSharding(Mesh(np.array(self.devices), (AXIS,)), PartitionSpec(AXIS))

  def to_checkpoint(self, tree) -> Any:
    """Mapped state -> what a checkpoint saves: global arrays sharded over every device."""
    if not self.parallel:
      return tree
    sharding = self._sharding()
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
        sharding, x, (self.num_devices, *np.shape(x)[1:])), self.host(tree))

  def checkpoint_template(self, tree) -> Any:
    """Mapped state -> the template ``Checkpointer.restore`` fills: abstract global arrays
    sharded over the devices, or on one device host arrays (zeros: pages never touched)."""
    if not self.parallel:
      return jax.tree.map(lambda x: np.zeros(np.shape(x), x.dtype), tree)
    sharding = self._sharding()
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        (self.num_devices, *np.shape(x)[1:]), x.dtype, sharding=sharding), tree)

  def from_checkpoint(self, tree) -> Any:
    """Restored arrays -> this process's rows, ready for the mapped functions. On one
    device they go to the default device uncommitted, as a fresh state's are: the
    programs already traced and lowered for a fresh state take them as they are (a
    committed array is another signature, which lowers every program again)."""
    return self.host(tree) if self.parallel else jax.device_put(tree)

  def assert_replicas_identical(self, agent) -> None:
    """Data-parallel invariant: every device of every process holds the same agent."""
    if not self.parallel:
      return
    for leaf in jax.tree.leaves(self.host(agent)):
      if not np.all(leaf == leaf[:1]):
        raise RuntimeError("agent parameters differ between devices: the data-parallel "
                           "update lost synchronisation")
    if jax.process_count() > 1:
      multihost_utils.assert_equal(
          self.first(agent),
          "agent parameters differ between processes: the data-parallel update lost "
          "synchronisation")
