"""The ``--devices`` option shared by ``qdyn train``, ``qdyn md`` and ``qdyn namd``
(docs/parallel.md); the multi-host options sit on the ``qdyn`` root (qdyn/cli/app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import typer

DEVICES_OPT = typer.Option(
    None, "--devices",
    help="Devices to split the work over (a count, or all): training batches (padded with zero-weight frames to a "
         "multiple), MD replicas and surface-hopping trajectories (must be a multiple). Default: one device.")


def devices_value(value: Optional[str], config_files: Sequence[Optional[Path]] = ()):
    """``--devices`` as the library takes it: None (not given), an int or 'all'; a bad value
    is a one-line error.

    On a CPU-only machine JAX's backend then gets one device per core asked for (by the
    option, else by a ``devices`` key in the first of ``config_files`` that exists;
    :func:`qdyn.parallel.use_cpu_cores`). Commands call this before anything starts JAX
    (importing qdyn does not: :mod:`qdyn._jax_md`)."""
    from ..parallel import parse_devices, use_cpu_cores
    from ..validation import QdynInputError

    try:
        devices = parse_devices(value)
    except QdynInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    use_cpu_cores(devices if devices is not None else _devices_in(config_files))
    return devices


def _devices_in(config_files: Sequence[Optional[Path]]):
    """The ``devices`` of the first config file that exists, read before JAX starts. The
    config loader validates the file later and reports its errors; here a file that does not
    parse just asks for nothing."""
    import yaml

    from ..parallel import parse_devices
    from ..validation import QdynInputError

    for path in config_files:
        if path is None or not Path(path).is_file():
            continue
        try:
            value = (yaml.safe_load(Path(path).read_text()) or {}).get("devices")
            return parse_devices(None if value is None else str(value))
        except (OSError, yaml.YAMLError, AttributeError, QdynInputError):
            return None
    return None
