"""Floating-point precision switches.

qdyn never changes JAX's global configuration on import: entry points (the CLI, notebooks,
tests, benchmarks) call :func:`enable_x64` explicitly. Library code asks
:func:`default_float` for the dtype that is in force.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def enable_x64(enabled: bool = True) -> None:
    """Switch JAX to 64-bit floats (call once at an entry point, before building models)."""
    jax.config.update("jax_enable_x64", bool(enabled))


def x64_enabled() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


def default_float():
    """float64 when x64 is on, else float32."""
    return jnp.float64 if x64_enabled() else jnp.float32


def complex_for(dtype):
    """The complex dtype matching a real dtype."""
    return jnp.complex128 if jnp.dtype(dtype) == jnp.float64 else jnp.complex64
