"""The ``--devices`` option shared by ``qdyn train``, ``qdyn md`` and ``qdyn namd``
(docs/parallel.md); the multi-host options sit on the ``qdyn`` root (qdyn/cli/app.py)."""

from __future__ import annotations

from typing import Optional

import typer

DEVICES_OPT = typer.Option(
    None, "--devices",
    help="Devices to split the work over (a count, or all): training batches (padded with zero-weight frames to a "
         "multiple), MD replicas and surface-hopping trajectories (must be a multiple). Default: one device.")


def devices_value(value: Optional[str]):
    """``--devices`` as the library takes it: None (not given), an int or 'all'; a bad value
    is a one-line error."""
    from ..parallel import parse_devices
    from ..validation import QdynInputError

    try:
        return parse_devices(value)
    except QdynInputError as exc:
        raise typer.BadParameter(str(exc)) from None
