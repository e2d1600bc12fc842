"""Tully's fewest-switches surface hopping (FSSH) as a pure ``(init, step)`` pair.

One trajectory moves classically on one adiabatic surface (the *active* state) while its
electronic wavefunction ``Σ_i c_i |i⟩`` evolves along the path; at every step it may hop to
another surface with the fewest-switches probability, conserving total energy by
rescaling the velocity along the nonadiabatic coupling vector.

Per nuclear step (length ``dt``) — steps 2 and 5 are :mod:`qdyn.namd.amplitudes`, steps 3
and 4 :mod:`qdyn.namd.hopping`:

1. velocity Verlet on the active surface: ``V½ = V + ½dt a(R)``, ``R' = R + dt V½``,
   electronic structure at ``R'`` (eigenvector signs aligned to the previous step's),
   ``V' = V½ + ½dt a(R')``;
2. the amplitudes are propagated through ``n_substeps`` substeps of
   ``iħ ċ = (diag(E) − iħ T) c`` with ``T_ij = V·d_ij`` (the time-derivative coupling),
   ``E`` and ``T`` interpolated linearly between the two ends of the step and each substep
   done by a symmetric splitting of phases and couplings at its midpoint (exactly unitary:
   norm-preserving to machine precision, second order in the substep);
3. the hop probabilities ``g_{a→j} = max(0, −2 δt Re(c_j* T_ja c_a) / |c_a|²)`` (Tully 1990,
   with ``V_ja = 0`` in the adiabatic basis) are summed over the substeps, and one uniform
   random number per step picks the target (or none);
4. an accepted hop ``a → j`` changes the velocity ``V → V − γ d_aj / m`` with the smaller
   root γ of ``½Σm|V − γd/m|² = ½Σm|V|² − (E_j − E_a)``; a hop whose root does not exist
   (not enough kinetic energy along ``d_aj``) is *frustrated* and handled by the
   ``frustrated`` policy;
5. optional energy-based decoherence correction (Granucci & Persico 2007): every inactive
   amplitude decays with rate ``|E_j − E_a| / ħ · E_kin / (E_kin + C)`` and the active one is
   renormalised.

**Frustrated hops** (keyword ``frustrated``):
    ``"keep"`` (default) — the velocity is left as it is. This is Tully's original
    prescription and the one his model-problem benchmarks use; it never injects momentum
    along ``d`` that the electronic dynamics did not ask for.
    ``"reverse"`` — the velocity component along ``d_aj`` (mass-weighted, so kinetic energy is
    unchanged) is reversed.
    ``"gradV"`` — Jasper & Truhlar's ∇V criterion (Chem. Phys. Lett. 369, 60 (2003)):
    reverse only when the target state's force along ``d`` opposes the velocity along ``d``,
    ``(F_j·d)(V·d) < 0`` (the trajectory would be turned back on the target surface anyway).

Units: qdyn's — ``R`` in Å, ``V`` in Å/fs, masses in amu, energies in eV, times in fs,
``ħ = units.HBAR_EV_FS`` eV·fs; kinetic energy ``½mV²`` is converted to eV with
``units.AMU_A2_FS2_EV`` (velocities in Å/fs make ``V·d`` a rate in 1/fs next to ``E/ħ``).
Model problems in atomic units are converted to these units once, in :mod:`qdyn.namd.tully`.

References:
    J. C. Tully, J. Chem. Phys. 93, 1061 (1990).
    G. Granucci and M. Persico, J. Chem. Phys. 126, 134114 (2007).
    S. Hammes-Schiffer and J. C. Tully, J. Chem. Phys. 101, 4657 (1994) (velocity rescaling).
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..precision import complex_for
from ..validation import QdynInputError
from .amplitudes import decohere, propagate
from .electronic import DEFAULT_GAP_REGULARIZATION_EV, Electronic, electronic_structure
from .hopping import FRUSTRATED_POLICIES, hop
DECOHERENCE = ("edc", "none")
EDC_C_EV = 0.1 * units.HARTREE_EV  # Granucci–Persico's recommended C = 0.1 Hartree


class FSSHState(NamedTuple):
    """One trajectory (add a leading axis for a batch; every field is vmapped).

    Attributes:
        R: nuclear coordinates [Å], shape ``S`` (``[n_atoms, 3]`` or ``[1]`` in 1D).
        V: velocities [Å/fs], shape ``S``.
        c: [n_states] complex adiabatic amplitudes.
        active: int32 scalar, the active adiabatic state.
        electronic: :class:`~qdyn.namd.electronic.Electronic` at ``R`` (reused by the next
            step: one electronic-structure evaluation per step).
        key: this trajectory's PRNG key (split once per step).
        time: fs.
        attempted, accepted, frustrated: int32 hop counters (attempted = the random number
            selected a target; accepted + frustrated = attempted).
    """

    R: jax.Array
    V: jax.Array
    c: jax.Array
    active: jax.Array
    electronic: Electronic
    key: jax.Array
    time: jax.Array
    attempted: jax.Array
    accepted: jax.Array
    frustrated: jax.Array


class Observables(NamedTuple):
    """What a trajectory reports (per frame).

    Attributes:
        active: int32, active state.  population: [n_states] |c_i|².
        potential, kinetic, total: eV (potential = active adiabatic energy).
        energies: [n_states] eV, every adiabatic energy (gaps at hops).
        R: positions [Å] (where the hops happen).
    """

    active: jax.Array
    population: jax.Array
    potential: jax.Array
    kinetic: jax.Array
    total: jax.Array
    energies: jax.Array
    R: jax.Array


class FSSH(NamedTuple):
    """Pure functions of one FSSH trajectory (vmap them for ensembles).

    Attributes:
        init: ``init(key, R, V, *, params, active) -> FSSHState``.
        step: ``step(state, *, params) -> FSSHState`` (one nuclear step).
        observe: ``observe(state) -> Observables``.
        dt_fs: nuclear time step [fs].
    """

    init: Callable
    step: Callable
    observe: Callable
    dt_fs: float


def _broadcast_mass(mass, R):
    return mass.reshape(mass.shape + (1,) * (R.ndim - mass.ndim))


def kinetic_energy(V, mass):
    """½ Σ m V² [eV] for V [Å/fs] (shape ``S``) and mass [amu] (leading axes of ``S``)."""
    m = _broadcast_mass(mass, V)
    return 0.5 * units.AMU_A2_FS2_EV * jnp.sum(m * V * V)


def _checked(masses, dt_fs, n_substeps, decoherence, frustrated, edc_C_eV) -> np.ndarray:
    """The masses [amu] as float64, after refusing bad settings (before anything compiles)."""
    if not (np.isfinite(dt_fs) and dt_fs > 0):
        raise QdynInputError(f"dt_fs must be a positive number of femtoseconds, got {dt_fs!r}")
    if int(n_substeps) < 1:
        raise QdynInputError(f"n_substeps must be ≥ 1, got {n_substeps!r}")
    if decoherence not in DECOHERENCE:
        raise QdynInputError(f"decoherence must be one of {DECOHERENCE}, got {decoherence!r}")
    if frustrated not in FRUSTRATED_POLICIES:
        raise QdynInputError(f"frustrated must be one of {FRUSTRATED_POLICIES}, got {frustrated!r}")
    if not edc_C_eV > 0:
        raise QdynInputError(f"edc_C_eV must be > 0, got {edc_C_eV!r}")
    masses = np.asarray(masses, dtype=np.float64)
    if masses.ndim != 1 or not np.all(masses > 0):
        raise QdynInputError(f"masses must be a 1D array of positive amu values, got {masses!r}")
    return masses


def fssh(
    W_fn: Callable,
    masses,
    dt_fs: float,
    *,
    n_substeps: int = 20,
    decoherence: Literal["edc", "none"] = "edc",
    edc_C_eV: float = EDC_C_EV,
    frustrated: Literal["keep", "reverse", "gradV"] = "keep",
    gap_regularization: float = DEFAULT_GAP_REGULARIZATION_EV,
) -> FSSH:
    """Build fewest-switches surface hopping for a diabatic model.

    Args:
        W_fn: ``W_fn(params, R) -> [n_states, n_states]`` symmetric diabatic matrix [eV],
            ``R`` in Å; params are passed at call time (a trained model plugs in unchanged).
        masses: [n] amu, one per leading index of ``R`` (atoms; or ``[1]`` in 1D).
        dt_fs: nuclear time step [fs].
        n_substeps: electronic substeps per nuclear step.
        decoherence: ``"edc"`` (Granucci–Persico energy-based decoherence) or ``"none"``.
        edc_C_eV: the EDC parameter C [eV] (default 0.1 Hartree).
        frustrated: frustrated-hop policy, ``"keep"``, ``"reverse"`` or ``"gradV"`` (module
            docstring).
        gap_regularization: ε [eV] of the regularised inverse gap in the NACs.

    Returns:
        :class:`FSSH` ``(init, step, observe, dt_fs)``.

    Example:
        >>> from qdyn.precision import enable_x64; enable_x64()
        >>> import jax, jax.numpy as jnp
        >>> from qdyn.namd import tully
        >>> W, p = tully.model(1)
        >>> sim = fssh(W, jnp.array([tully.MASS_AMU]), 0.1)
        >>> s = sim.init(jax.random.PRNGKey(0), jnp.array([-4.0]), jnp.array([0.05]), params=p, active=0)
        >>> s = sim.step(s, params=p)
    """
    masses = _checked(masses, dt_fs, n_substeps, decoherence, frustrated, edc_C_eV)
    dt = float(dt_fs)
    n_sub = int(n_substeps)
    C = float(edc_C_eV)
    eps = float(gap_regularization)

    def electronic(params, R, U_ref):
        return electronic_structure(W_fn, params, R, U_ref=U_ref, gap_regularization=eps)

    def mass_of(R):
        return _broadcast_mass(jnp.asarray(masses, R.dtype), R)

    def acceleration(el, active, R):
        # eV/Å / amu -> Å/fs²
        return -el.grad[active] / mass_of(R) / units.AMU_A2_FS2_EV

    def tdc(V, nac):
        """T_ij = V·d_ij [1/fs]."""
        return jnp.tensordot(nac, V, axes=V.ndim)

    def init(key, R, V, *, params, active):
        R = jnp.asarray(R)
        V = jnp.asarray(V, R.dtype)
        el = electronic(params, R, None)
        n = el.energy.shape[0]
        active = jnp.asarray(active, jnp.int32)
        c = jax.nn.one_hot(active, n, dtype=complex_for(R.dtype))
        zero = jnp.zeros((), jnp.int32)
        return FSSHState(R, V, c, active, el, key, jnp.zeros((), R.dtype), zero, zero, zero)

    def step(state, *, params):
        key, k_hop = jax.random.split(state.key)
        el0 = state.electronic
        R, V, active = state.R, state.V, state.active
        V_half = V + 0.5 * dt * acceleration(el0, active, R)
        R1 = R + dt * V_half
        el1 = electronic(params, R1, el0.U)
        V1 = V_half + 0.5 * dt * acceleration(el1, active, R1)
        c, g = propagate(state.c, active, el0.energy, el1.energy, tdc(V, el0.nac), tdc(V1, el1.nac), dt=dt,
                         n_substeps=n_sub)
        h = hop(k_hop, g, active, V1, el1, mass_of(R1), frustrated=frustrated)
        if decoherence == "edc":
            c = decohere(c, h.active, el1.energy, kinetic_energy(h.V, jnp.asarray(masses, R1.dtype)), dt=dt, C_eV=C)
        i32 = jnp.int32
        return FSSHState(R1, h.V, c, h.active, el1, key, state.time + dt,
                         state.attempted + h.attempted.astype(i32), state.accepted + h.accepted.astype(i32),
                         state.frustrated + h.frustrated.astype(i32))

    def observe(state):
        pot = state.electronic.energy[state.active]
        kin = kinetic_energy(state.V, jnp.asarray(masses, state.R.dtype))
        return Observables(state.active, jnp.abs(state.c) ** 2, pot, kin, pot + kin, state.electronic.energy, state.R)

    return FSSH(init, step, observe, dt)
