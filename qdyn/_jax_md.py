"""The parts of JAX-MD qdyn uses (``space``, ``partition``, ``simulate``), imported without
running ``jax_md/__init__.py``.

Why: that ``__init__`` imports every JAX-MD module, and two of them do work on import.
``jax_md.rigid_body`` builds its example shapes (``monomer`` ... ``octohedron``) eagerly, which
compiles 123 small XLA programs; ``jax_md.nn`` imports e3nn-jax and sympy for NequIP. Measured
on a 2-core machine: ``import jax_md`` 11.4 s, of which 6.4 s rigid_body and 4.0 s nn; the
three modules qdyn needs take 0.1 s. Every ``qdyn`` command, notebook kernel and worker process
paid those seconds before it did anything.

How: when nothing has imported ``jax_md`` yet, ``jax_md`` is registered as a package module
whose submodules load on first attribute access (PEP 562 ``__getattr__``). ``import jax_md``
in the same process then gets that module, and ``jax_md.energy``, ``from jax_md import
rigid_body`` etc. still work: each loads when first named. If ``jax_md`` was imported before
qdyn, qdyn uses it as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def _lazy_package():
    """``jax_md`` as a package module whose submodules load when first named."""
    spec = importlib.util.find_spec("jax_md")
    if spec is None:
        raise ModuleNotFoundError("No module named 'jax_md' (qdyn needs jax-md: pip install jax-md)", name="jax_md")
    package = importlib.util.module_from_spec(spec)  # created, not executed

    def __getattr__(name: str):
        if name.startswith("__"):  # dunder lookups (copy, pickle, inspect) are not submodules
            raise AttributeError(name)
        try:
            return importlib.import_module(f"jax_md.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"jax_md.{name}":
                raise  # the submodule exists but one of its own imports failed
            raise AttributeError(f"module 'jax_md' has no attribute '{name}'") from None

    package.__getattr__ = __getattr__
    return package


if "jax_md" not in sys.modules:
    sys.modules["jax_md"] = _lazy_package()

from jax_md import partition, simulate, space  # noqa: E402

__all__ = ["partition", "simulate", "space"]
