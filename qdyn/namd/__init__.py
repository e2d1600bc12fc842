"""Nonadiabatic dynamics: fewest-switches surface hopping on diabatic models, in JAX.

* :mod:`qdyn.namd.electronic` — adiabatic energies, gradients and NACs from ``W(R)``.
* :mod:`qdyn.namd.fssh` — the ``(init, step, observe)`` factory of one FSSH trajectory.
* :mod:`qdyn.namd.run` — :func:`run_fssh`, ensembles in jitted, vmapped blocks.
* :mod:`qdyn.namd.initial` — Wigner / Boltzmann / wavepacket initial conditions.
* :mod:`qdyn.namd.tully` — Tully's three model problems (converted to eV, Å, amu).
* :mod:`qdyn.namd.wavepacket` — exact split-operator reference for 1D scattering.
* :mod:`qdyn.namd.analytic` — a small analytic triatomic diabatic model.
* :mod:`qdyn.namd.report` — multistate-model adapter, lifetime fits, hop / energy summaries, plots.

A diabatic function has the signature ``W_fn(params, R) -> [n_states, n_states]`` (eV,
symmetric; R in Å). A model that also takes a ``System`` plugs in as
``lambda params, R: model.apply(params, R, system)``.
"""

from .electronic import Electronic, align_phases, electronic_structure
from .fssh import FSSH, FSSHState, Observables, fssh
from .initial import minimize_adiabatic, normal_mode_sampler, wavepacket_sampler
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
