"""The one way qdyn draws and saves figures: matplotlib's Agg backend (no display needed) and
an atomic write (a watcher or a kill never sees half a PNG).

Example:
    >>> import tempfile, pathlib
    >>> from qdyn.plotting import pyplot, save_figure
    >>> plt = pyplot()
    >>> fig, ax = plt.subplots()
    >>> _ = ax.plot([0, 1], [0, 1])
    >>> path = save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "line.png")
    >>> path.read_bytes()[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import sys
from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: matplotlib is optional
    for the library core)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix, tight bounding box) and
    close it in pyplot if pyplot manages it (figures built on a bare Agg canvas, without the
    global backend switch, are written the same way); returns the path."""
    from .data.io import atomic_write

    path = Path(path)
    try:
        # the temporary name ends in the figure's suffix: matplotlib picks the format from it
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"), suffix=path.suffix)
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close(fig)
    return path
