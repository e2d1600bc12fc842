"""Floating-point precision switches.

qdyn never changes JAX's global configuration on import: entry points (the CLI, notebooks,
tests, benchmarks) call :func:`enable_x64` explicitly. Library code asks
:func:`default_float` for the dtype that is in force.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp


def enable_x64(enabled: bool = True) -> None:
    """Switch JAX to 64-bit floats (call once at an entry point, before building models)."""
    jax.config.update("jax_enable_x64", bool(enabled))


def rank_promotion_allowed(fn):
    """``fn`` run under ``jax.numpy_rank_promotion("allow")``: for third-party code (jax-md)
    that broadcasts [n, 3] against [3] implicitly. qdyn's own code writes its broadcasts out,
    and its tests run with ``jax_numpy_rank_promotion="raise"``."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.numpy_rank_promotion("allow"):
            return fn(*args, **kwargs)

    return wrapped


def x64_enabled() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


def default_float():
    """float64 when x64 is on, else float32."""
    return jnp.float64 if x64_enabled() else jnp.float32


def complex_for(*like):
    """The complex dtype for real inputs ``like`` (dtypes, arrays or pytrees of them): complex128
    if any is float64, so float32 positions meeting float64 parameters give one statevector
    dtype instead of a complex64/complex128 clash inside ``lax.scan``."""
    import jax

    dts = [jnp.dtype(getattr(x, "dtype", x)) for x in jax.tree_util.tree_leaves(like)]
    return jnp.complex128 if any(d in (jnp.float64, jnp.complex128) for d in dts) else jnp.complex64


def accelerator_plugin_installed() -> bool:
    """Whether a JAX accelerator plugin (CUDA, ROCm: the ``jax_plugins`` namespace or entry
    points) or libtpu is installed, judged from the installed packages alone: unlike
    ``jax.default_backend()`` this starts no backend, so the CPU device count can still be
    chosen afterwards (:func:`qdyn.parallel.use_cpu_cores`)."""
    from importlib import metadata, util

    if util.find_spec("jax_plugins") is not None or util.find_spec("libtpu") is not None:
        return True
    return bool(metadata.entry_points(group="jax_plugins"))


def enable_compilation_cache(directory=None, *, on_cpu: bool = False) -> Optional[str]:
    """Turn on JAX's persistent compilation cache for GPU/TPU backends (entry points only).

    Circuits with forces take seconds to compile on an accelerator; caching the compiled
    programs on disk makes the second CLI run or notebook restart start at once. On the CPU
    backend the cache stays off unless ``on_cpu``: loading CPU entries prints
    ``cpu_aot_loader ... SIGILL`` warnings on every command (jax-ml/jax#38445) and did not
    make ``qdyn eval`` faster (21.8 s with it, 23.1 s without). Default directory:
    :func:`qdyn.cache.compilation_cache_dir`. Returns the directory used, or None when off.
    """
    from .cache import compilation_cache_dir

    if jax.default_backend() == "cpu" and not on_cpu:
        return None
    directory = Path(directory) if directory is not None else compilation_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    # only programs that took a while to compile are worth a disk entry
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return str(directory)
