"""Where qdyn keeps its caches: one root, one subdirectory per cache.

The root is ``$QDYN_CACHE_DIR`` or ``~/.cache/qdyn``. Label frames (PySCF/xTB results, costly
to recompute) live in ``<root>/labels`` and JAX's compiled programs in ``<root>/jax``, so
clearing one never clears the other.

    >>> label_cache_dir().parent == compilation_cache_dir().parent == cache_root()
    True
    >>> label_cache_dir().name, compilation_cache_dir().name
    ('labels', 'jax')
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "label_cache_dir", "compilation_cache_dir"]


def cache_root() -> Path:
    """``$QDYN_CACHE_DIR`` or ``~/.cache/qdyn``."""
    return Path(os.environ.get("QDYN_CACHE_DIR") or Path.home() / ".cache" / "qdyn")


def label_cache_dir() -> Path:
    """Per-frame reference labels (:func:`qdyn.data.label_dataset`)."""
    return cache_root() / "labels"


def compilation_cache_dir() -> Path:
    """JAX's persistent compilation cache (:func:`qdyn.precision.enable_compilation_cache`)."""
    return cache_root() / "jax"
