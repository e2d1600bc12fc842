"""Data and replica parallelism over a device mesh (``jax.sharding``), and the multi-host start.

One concept, used by training, MD and surface hopping alike: a one-dimensional
:class:`jax.sharding.Mesh` whose axis ``"batch"`` runs over the chosen devices. Whatever has
a leading batch axis (a training batch's frames, MD replicas, FSSH trajectories) is split
along it; parameters and optimiser state are replicated. The jitted programs stay what they
are (one program, no per-device code): XLA partitions them from the shardings of their
arguments (GSPMD), and a sum over the batch becomes an all-reduce.

Every placement goes through :func:`jax.make_array_from_callback`, which each process calls
for its own devices only, so the same code serves one process and several
(:func:`initialize_distributed`): each process computes the same global host arrays (the
batch order, initial conditions and keys are pure functions of the seed) and fills its own
shards. :func:`to_host` gathers results across processes.

Example:
    >>> import numpy as np
    >>> mesh = make_mesh(1)
    >>> x = put_sharded(np.arange(4.0), mesh)
    >>> to_host(x).tolist()
    [0.0, 1.0, 2.0, 3.0]
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Union

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .validation import QdynInputError

#: name of the mesh axis that batches, replicas and trajectories are split along
AXIS = "batch"

#: environment variables read by :func:`initialize_distributed` when no argument is given
ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = "QDYN_COORDINATOR", "QDYN_NUM_PROCESSES", "QDYN_PROCESS_ID"

Devices = Union[int, str, None]


def parse_devices(value: Optional[str]) -> Devices:
    """A ``--devices`` string: ``"all"``, a positive integer, or None (not given)."""
    if value is None or value == "all":
        return value
    try:
        n = int(value)
    except ValueError:
        raise QdynInputError(f"--devices must be a positive integer or 'all', got {value!r}") from None
    if n < 1:
        raise QdynInputError(f"--devices must be a positive integer or 'all', got {value!r}")
    return n


def cpu_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a batch scheduler may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: set by :func:`initialize_distributed`: a multi-process run keeps each process's device count
_DISTRIBUTED = {"started": False}


def use_cpu_cores(devices: Devices) -> bool:
    """Give JAX's CPU backend one device per core that ``devices`` asks for (``"all"``: every
    core of :func:`cpu_cores`), so that a mesh splits batches and replicas over the cores.

    JAX's CPU backend is one device, and qdyn's small kernels then run on one core: split over
    two devices, a 2-core machine ran 1024-replica MD 1.7x and the training step 1.7-1.8x
    faster (benchmarks/README.md, section bench_cores). The device count can only be set
    before anything touches a device, so call this at an entry point, first thing (the CLI
    does it when ``--devices`` is given; :func:`make_mesh` tries it too). Harmless on an
    accelerator machine (the CPU backend is not the default there).

    Returns:
        True when the CPU device count was set; False when ``devices`` is None or 1, when it
        is too late (a device has been touched), when XLA_FLAGS forces a host-device count
        (``--xla_force_host_platform_device_count``, as the tests do) or ``jax_num_cpu_devices``
        was set already, and in a multi-process run (each process keeps its devices).
    """
    if devices is None or devices == 1 or _DISTRIBUTED["started"]:
        return False
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    if jax.config.jax_num_cpu_devices >= 0:
        return False
    n = cpu_cores() if devices == "all" else int(devices)
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # "should be updated before backends are initialized"
        return False
    return True


def device_count(devices: Devices) -> int:
    """How many devices ``devices`` (an int, ``"all"`` or None = 1) asks for, checked against
    those JAX sees (every process's, in a multi-host run)."""
    available = jax.devices()
    if devices is None:
        return 1
    n = len(available) if devices == "all" else int(devices)
    if n < 1 or n > len(available):
        hint = ""
        if available[0].platform == "cpu":
            hint = ("; on CPU qdyn makes one device per core only before anything has run: give --devices on the "
                    "command line, or call qdyn.parallel.use_cpu_cores(N) right after import")
        raise QdynInputError(f"devices = {devices}: JAX sees {len(available)} device(s) "
                             f"({available[0].platform}); ask for 1..{len(available)} or 'all'{hint}")
    if jax.process_count() > 1 and n != len(available):
        raise QdynInputError(f"devices = {devices}: a run over {jax.process_count()} processes uses every device "
                             f"of every process ({len(available)}); ask for 'all'")
    return n


def make_mesh(devices: Devices) -> Optional[Mesh]:
    """The one-axis mesh over the first ``device_count(devices)`` devices, or None when
    ``devices`` is None (the plain single-device path, nothing placed)."""
    if devices is None:
        return None
    use_cpu_cores(devices)  # a no-op once a device has been touched
    n = device_count(devices)
    return Mesh(np.asarray(jax.devices()[:n]), (AXIS,))


def mesh_size(mesh: Optional[Mesh]) -> int:
    return 1 if mesh is None else int(mesh.devices.size)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Split along array axis ``axis`` (the batch / replica axis)."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), AXIS))


def _place(x, sharding: NamedSharding):
    if isinstance(x, jax.Array) and x.sharding.device_set == sharding.device_set:
        return jax.device_put(x, sharding)  # already on the mesh (an earlier output): no-op or reshard, no host copy
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put_replicated(tree, mesh: Optional[Mesh]):
    """Every array leaf of ``tree`` on every device of ``mesh`` (unchanged without a mesh)."""
    if mesh is None:
        return tree
    return jax.tree_util.tree_map(lambda x: _place(x, replicated(mesh)), tree)


def put_sharded(tree, mesh: Optional[Mesh], *, axis: int = 0):
    """Every array leaf of ``tree`` split along its axis ``axis`` over ``mesh``; leaves with
    fewer dimensions (scalars) are replicated. Unchanged without a mesh."""
    if mesh is None:
        return tree

    def one(x):
        return _place(x, sharded(mesh, axis) if np.ndim(x) > axis else replicated(mesh))

    return jax.tree_util.tree_map(one, tree)


def split_batch(fn: Callable, mesh: Optional[Mesh], n_batched: int) -> Callable:
    """``fn(shared, *batched)``, a function vmapped over the leading axis of its last
    ``n_batched`` arguments, run by each device on its own shard of them (``shard_map``;
    ``shared``, the parameters, replicated). Unchanged without a mesh.

    Where it matters: differentiated with respect to ``shared`` (a training step), each device
    now finishes its own backward pass and the gradients are summed over devices once, at the
    end. Left to GSPMD, the partitioned program reduced them inside the circuit's layer loop
    and a training step over two CPU cores ran 0.6-1.1x the speed of one core; with this,
    ~1.7x (benchmarks/README.md, section bench_cores).
    """
    if mesh is None:
        return fn
    specs = (PartitionSpec(),) + (PartitionSpec(AXIS),) * n_batched
    # check_vma off: the circuits' lax.scan starts from a state that does not depend on the
    # shard (the singlet), and its carry then becomes shard-dependent; the values are right
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(AXIS), check_vma=False)


def check_divisible(n: int, mesh: Optional[Mesh], what: str, flag: str) -> None:
    """Refuse ``n`` items (replicas, trajectories) that do not split evenly over the mesh:
    each device must hold the same number, and padding would add dynamics nobody asked for."""
    d = mesh_size(mesh)
    if n % d:
        lo, hi = n // d * d, -(-n // d) * d
        raise QdynInputError(f"{flag}: {n} {what} do not split evenly over {d} devices; use a multiple of {d} "
                             f"(e.g. {lo or hi} or {hi}) or fewer devices")


def padded_size(n: int, mesh: Optional[Mesh]) -> int:
    """``n`` rounded up to a multiple of the mesh size (training batches get zero-weight
    padding frames up to it)."""
    d = mesh_size(mesh)
    return -(-n // d) * d


def to_host(x) -> np.ndarray:
    """A NumPy copy of ``x``, gathered from every process when it spans several."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def tree_to_host(tree):
    return jax.tree_util.tree_map(to_host, tree)


def is_primary() -> bool:
    """True in the process that writes shared outputs (process 0; the only one without
    :func:`initialize_distributed`)."""
    return jax.process_index() == 0


def initialize_distributed(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> bool:
    """Join a multi-process JAX run (``jax.distributed.initialize``); call at an entry point
    before anything touches a device.

    Arguments not given are read from ``QDYN_COORDINATOR`` (``host:port`` of process 0),
    ``QDYN_NUM_PROCESSES`` and ``QDYN_PROCESS_ID``. Without a coordinator nothing happens
    (returns False). On CPU the cross-process collectives use gloo.

    Raises:
        QdynInputError: a coordinator without the process count or id, or ids out of range.
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
    if coordinator is None:
        return False
    num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    if num_processes is None or process_id is None:
        raise QdynInputError(f"--coordinator {coordinator}: also give --num-processes and --process-id "
                             f"(or {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID})")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise QdynInputError(f"--process-id must be in [0, {num_processes}) for --num-processes {num_processes}, "
                             f"got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    _DISTRIBUTED["started"] = True
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
    return True


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise QdynInputError(f"environment variable {name} must be an integer, got {value!r}") from None


def process_out_dir(out):
    """The output directory of this process in a multi-process run: ``out`` for process 0,
    ``out.process<k>`` for the others (each process computes the whole, identical result;
    separate directories keep their writes from colliding)."""
    from pathlib import Path

    out = Path(out)
    k = jax.process_index()
    return out if k == 0 else out.with_name(f"{out.name}.process{k}")
