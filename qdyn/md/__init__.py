"""Molecular dynamics with any qdyn model through JAX-MD: integrators, the jitted block and
host loop (neighbour-list overflow, NaN checks on the new state, checkpoints), batched
replicas, initial momenta, analysis, trajectories and an ASE calculator.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax
    >>> from qdyn import md
    >>> from qdyn.models import bpnn
    >>> from qdyn.structures import water
    >>> model = bpnn.build(species=(1, 8), hidden=(8,))
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> R, system = water()
    >>> res = md.run_md(md.model_energy_fn(model.apply), params, R, system,
    ...                 md.MDSettings(ensemble="nve", dt_fs=0.5, n_steps=20),
    ...                 output=md.MDOutput(stride=5, progress=None))
    >>> res.position.shape  # frame 0 and 4 sampled frames, 1 stored replica, 3 atoms
    (5, 1, 3, 3)
"""

from ..checkpoint import load_state, save_state
from .adapters import diabatic_fn, model_energy_fn
from .host_loop import BlowUpError, host_loop
from .integrators import ENSEMBLES, Integrator, Space, make_integrator, make_space, masses
from .momenta import degrees_of_freedom, maxwell_boltzmann
from .run import Frames, MDResult, make_block, run_md
from .settings import MDOutput, MDSettings
from .watchdog import Watchdog, WatchLog, make_watchdog

__all__ = [
    "degrees_of_freedom", "maxwell_boltzmann",
    "diabatic_fn", "model_energy_fn",
    "ENSEMBLES", "Integrator", "Space", "make_integrator", "make_space", "masses",
    "BlowUpError", "host_loop",
    "Frames", "MDOutput", "MDResult", "MDSettings", "load_state", "make_block", "run_md", "save_state",
    "Watchdog", "WatchLog", "make_watchdog",
]
