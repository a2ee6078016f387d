"""Data-parallel training on JAX: who writes, and how one process's rows join a global batch.

``train`` runs data-parallel when the caller opens a ``keras.distribution.DataParallel`` scope
on the JAX backend (``with keras.distribution.DataParallel(...).scope(): train(...)``); the
library never sets a distribution itself. Then every process runs the same ``train`` call on
its own rows, and:

- the model's variables, the optimizer's and the metrics' state are replicated on every device
  of the mesh (process 0's initial values are broadcast to all, so an unseeded model starts the
  same everywhere);
- ``batch_size`` is the global batch size: each process feeds ``batch_size // process_count``
  rows of every step, and the global batch is sharded over the mesh's batch axis with
  ``jax.make_array_from_process_local_data``;
- every process runs the same number of steps: the processes agree (a collective) on the
  smallest local row count, and each trains on that many of its rows per epoch, the first ones
  of its epoch order (rows past it are left out of that epoch only; with shuffling, other rows
  each epoch). A last partial step is rounded down to a multiple of the process's devices;
- validation uses all of each process's rows: the processes agree on the largest local count,
  and each pads its chunks with masked rows (weight 0) up to it, so the metrics are global.

Only the primary process (``is_primary()``, process 0) writes checkpoints and files. What it
does alone must not start a collective the others never join: it saves models inside
``outside_distribution()`` and puts weights back with ``assign_locally``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "LocalFeed",
    "ShardedFeed",
    "assign_locally",
    "data_parallel",
    "feed_for",
    "is_primary",
    "outside_distribution",
]


def is_primary() -> bool:
    """Whether this process writes the run's files: process 0, or the only process.

    On the TensorFlow backend (one process) it is always ``True``.

    Example:

    >>> from dlstructured.training.parallel import is_primary
    >>> is_primary()
    True
    """
    import keras

    if keras.backend.backend() != "jax":
        return True
    import jax

    return jax.process_index() == 0


def data_parallel() -> Any:
    """The active ``keras.distribution.DataParallel`` on the JAX backend, else ``None``.

    Raises:
        ValueError: If another kind of distribution is active (the JAX engine shards data
            only).

    Example:

    >>> from dlstructured.training.parallel import data_parallel
    >>> data_parallel() is None
    True
    """
    import keras

    if keras.backend.backend() != "jax":
        return None
    distribution = keras.distribution.distribution()
    if distribution is None:
        return None
    if not isinstance(distribution, keras.distribution.DataParallel):
        raise ValueError(
            "The JAX engine trains data-parallel under a keras.distribution.DataParallel scope "
            "only; use engine='keras' for other distributions. Received: distribution="
            f"{type(distribution).__name__}"
        )
    return distribution


def feed_for(distribution: Any) -> LocalFeed | ShardedFeed:
    """The feed for ``distribution``: a ``ShardedFeed`` for a ``DataParallel``, else local."""
    return LocalFeed() if distribution is None else ShardedFeed(distribution)


class LocalFeed:
    """One process, one device: arrays go to the default device as they are."""

    process_count = 1
    local_devices = 1

    def local_batch_size(self, batch_size: int) -> int:
        """Rows this process feeds per step."""
        return batch_size

    def put(self, array: np.ndarray | None, batch_axis: int = 0) -> Any:
        """``array`` on the device."""
        import jax

        return None if array is None else jax.device_put(np.asarray(array))

    def replicate(self, values: list) -> list:
        """``values`` as they are (one device)."""
        return values

    def broadcast(self, values: list) -> list:
        """``values`` as they are (one process)."""
        return values

    def agree(self, count: int, how: str) -> int:
        """``count``: its ``"min"``, ``"max"`` or ``"sum"`` over the one process."""
        return count


class ShardedFeed:
    """Feeds a ``DataParallel`` mesh: process-local rows become shards of global arrays.

    Args:
        distribution: The active ``keras.distribution.DataParallel``.
    """

    def __init__(self, distribution: Any):
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        self.mesh = distribution.device_mesh.backend_mesh
        self.axis = distribution.batch_dim_name
        self.process_count = jax.process_count()
        process = jax.process_index()
        devices = self.mesh.devices.reshape(-1)
        self.local_devices = sum(1 for device in devices if device.process_index == process)
        self._replicated = NamedSharding(self.mesh, PartitionSpec())
        self._sharded = {}
        self._named, self._spec = NamedSharding, PartitionSpec

    def local_batch_size(self, batch_size: int) -> int:
        """Rows this process feeds per step: ``batch_size // process_count``.

        Raises:
            ValueError: If ``batch_size`` does not split evenly over the processes and their
                devices.
        """
        devices = self.process_count * self.local_devices
        if batch_size % devices:
            raise ValueError(
                "`batch_size` is the global batch under DataParallel and must split evenly "
                f"over the {self.process_count} process(es) x {self.local_devices} device(s) "
                f"of the mesh (a multiple of {devices}). Received: batch_size={batch_size}"
            )
        return batch_size // self.process_count

    def put(self, array: np.ndarray | None, batch_axis: int = 0) -> Any:
        """This process's ``array`` as its shard of a global array split on ``batch_axis``."""
        import jax

        if array is None:
            return None
        array = np.asarray(array)
        sharding = self._sharded.get((batch_axis, array.ndim))
        if sharding is None:
            axes = [None] * array.ndim
            axes[batch_axis] = self.axis
            sharding = self._named(self.mesh, self._spec(*axes))
            self._sharded[(batch_axis, array.ndim)] = sharding
        return jax.make_array_from_process_local_data(sharding, array)

    def replicate(self, values: list) -> list:
        """``values`` replicated on every device of the mesh (as they are when already so).

        Values must be equal on every process (``broadcast`` makes them so).
        """
        import jax

        replicated = []
        for value in values:
            if getattr(value, "sharding", None) == self._replicated:
                replicated.append(value)
                continue
            host = np.asarray(value)
            replicated.append(jax.make_array_from_callback(
                host.shape, self._replicated, lambda index, host=host: host[index]
            ))
        return replicated

    def broadcast(self, values: list) -> list:
        """Process 0's ``values`` (as numpy arrays) on every process."""
        host = [np.asarray(value) for value in values]
        if self.process_count == 1:
            return host
        from jax.experimental import multihost_utils

        return [np.asarray(value) for value in multihost_utils.broadcast_one_to_all(host)]

    def agree(self, count: int, how: str) -> int:
        """The ``"min"``, ``"max"`` or ``"sum"`` of ``count`` over all processes."""
        if self.process_count == 1:
            return count
        from jax.experimental import multihost_utils

        counts = np.asarray(multihost_utils.process_allgather(np.asarray(count, np.int64)))
        return int({"min": np.min, "max": np.max, "sum": np.sum}[how](counts))


@contextlib.contextmanager
def outside_distribution() -> Iterator[None]:
    """Run a block with no Keras distribution active, then give the caller's back.

    What only process 0 does (saving a model) must not create Keras variables under a
    multi-process distribution: placing them is a collective that the other processes never
    join, so process 0 would wait forever. In this block new variables stay on this process.

    Example:

    >>> from dlstructured.training.parallel import outside_distribution
    >>> with outside_distribution():
    ...     pass
    """
    import keras

    current = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if current is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def assign_locally(variables: list, values: list) -> None:
    """Assign numpy ``values`` to Keras ``variables`` without a collective.

    A numpy value assigned to a variable placed across processes goes through
    ``jax.device_put``, which first checks with every process that the value is the same:
    a collective. Here the value is put in the variable's placement from this process's copy
    (all processes must hold the same values, as they do for snapshots of replicated weights),
    so one process alone can assign (process 0 saving the best weights, for example).

    Example:

    >>> import keras, numpy as np
    >>> from dlstructured.training.parallel import assign_locally
    >>> variable = keras.Variable(np.zeros(2, "float32"))
    >>> assign_locally([variable], [np.ones(2, "float32")])
    >>> variable.numpy().tolist()
    [1.0, 1.0]
    """
    import keras

    jax_backend = keras.backend.backend() == "jax"
    for variable, value in zip(variables, values, strict=True):
        layout = getattr(variable, "_layout", None) if jax_backend else None
        if layout is not None:
            import jax

            sharding = getattr(layout, "backend_layout", layout)
            host = np.asarray(value, dtype=variable.dtype)
            value = jax.make_array_from_callback(
                host.shape, sharding, lambda index, host=host: host[index]
            )
        variable.assign(value)
