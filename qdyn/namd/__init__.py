"""Nonadiabatic dynamics: fewest-switches surface hopping on diabatic models, in JAX.

* :mod:`qdyn.namd.electronic` — adiabatic energies, gradients and NACs from ``W(R)``.
* :mod:`qdyn.namd.fssh` — the ``(init, step, observe)`` factory of one FSSH trajectory.
* :mod:`qdyn.namd.run` — :func:`run_fssh`, ensembles in jitted, vmapped blocks (MD's host loop).
* :mod:`qdyn.namd.sampling` — Wigner / Boltzmann / wavepacket initial conditions.
* :mod:`qdyn.namd.tully` — Tully's three model problems (converted to eV, Å, amu).
* :mod:`qdyn.namd.wavepacket` — exact split-operator reference for 1D scattering.
* :mod:`qdyn.namd.analytic` — a small analytic triatomic diabatic model.
* :mod:`qdyn.namd.report` — lifetime fits, hop / energy summaries, plots.

A diabatic function has the signature ``W_fn(params, R) -> [n_states, n_states]`` (eV,
symmetric; R in Å). A multistate model plugs in through :func:`qdyn.md.adapters.diabatic_fn`
(its ``apply`` is the ground-state energy, a scalar, not the matrix).

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax, numpy as np
    >>> from qdyn.md import diabatic_fn
    >>> from qdyn.models import multistate
    >>> from qdyn.namd import run_fssh
    >>> from qdyn.system import System
    >>> model = multistate.build(species=(1, 20), n_states=2, backbone="bpnn", hidden=(8,))
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> system = System.create(["Ca", "H", "H"])
    >>> R0 = np.array([[[0.0, 0, 0], [2.05, 0, 0], [-2.0, 0.4, 0]]])   # [replicas, 3, 3] Å
    >>> res = run_fssh(diabatic_fn(model, system), params, masses=[40.08, 1.008, 1.008], dt_fs=0.1,
    ...                n_steps=10, key=jax.random.PRNGKey(0), initial_state=1, R0=R0, V0=np.zeros_like(R0),
    ...                stride=5, progress=None)
    >>> res.active_fraction.shape
    (3, 2)
"""

from .electronic import Electronic, align_phases, electronic_structure
from .fssh import FSSH, FSSHState, Observables, fssh
from .sampling import minimize_adiabatic, normal_mode_sampler, wavepacket_sampler
from .run import FSSHResult, run_fssh

__all__ = [
    "Electronic",
    "align_phases",
    "electronic_structure",
    "FSSH",
    "FSSHState",
    "Observables",
    "fssh",
    "minimize_adiabatic",
    "normal_mode_sampler",
    "wavepacket_sampler",
    "FSSHResult",
    "run_fssh",
]
