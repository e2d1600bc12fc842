"""qdyn: quantum-classical machine-learned force fields and molecular dynamics in JAX.

Importing qdyn changes no global JAX setting; call :func:`qdyn.enable_x64` at your entry
point (the CLI, tests and notebooks do).
"""

from .precision import enable_x64
from .system import System

__version__ = "0.1.0"

__all__ = ["enable_x64", "System", "__version__"]
