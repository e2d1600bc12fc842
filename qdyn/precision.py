"""Floating-point precision switches.

qdyn never changes JAX's global configuration on import: entry points (the CLI, notebooks,
tests, benchmarks) call :func:`enable_x64` explicitly. Library code asks
:func:`default_float` for the dtype that is in force.
"""

from __future__ import annotations

import functools

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


def enable_compilation_cache(directory=None) -> str:
    """Turn on JAX's persistent compilation cache (entry points only).

    Circuits with forces take seconds to compile; caching the compiled programs on disk
    makes the second CLI run or notebook restart start at once. Default directory:
    ``$QDYN_CACHE_DIR`` or ``~/.cache/qdyn/jax``. Returns the directory used.
    """
    import os

    directory = directory or os.environ.get("QDYN_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "qdyn", "jax")
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    # only programs that took a while to compile are worth a disk entry
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return str(directory)
