"""The hybrid quantum-classical model: classical feature extraction → [per-atom quantum
branch ∥ MLP] → integration layer → atomic energies → total.

Per atom i: invariant descriptors G_i (standardised) feed a Flax MLP, and a quantum branch
with a fixed number of qubits per atom (one small circuit per atom, evaluated with ``vmap``;
qubits do not grow with system size). The branch is one of

* ``"reupload"`` (default): a data re-uploading circuit, angles ``π · tanh(A_d G_i + b_d)``
  (bounded encoding), outputs ``⟨Z_q⟩``;
* ``"qsf"``: the quantum symmetry function (:mod:`qdyn.quantum.qsf`): the atom's neighbour
  vectors, aggregated into ``n_qubits`` learnable radial/species channels
  ``v_c = Σ_{s,k} W[c,s,k] Σ_{j∈s} R_k(r_ij) r̂_ij``, go through the siVQLM SU(2)-equivariant
  encoding and Heisenberg layers; outputs the n(n-1)/2 pair exchanges (invariant);
* ``"mlp"``: the classical-only control — the circuit replaced by a tanh MLP
  ``G → layers·n_qubits → n_qubits`` (tanh-bounded outputs like ⟨Z⟩) of the same width and,
  within a few percent, the same parameter count as the re-uploading circuit and its encoding.

An integration layer (one per element) maps [branch ∥ MLP] to the atomic energy;
``E = Σ_i scale · e_i + shift_{Z_i}``. Invariant to rotations, reflections, translations and
permutations of like atoms (the descriptors and the QSF are), extensive (a sum of local
terms) and smooth (C² cutoffs). An optional fixed pair wall below the training data's
shortest distances (``core_radii``, :mod:`qdyn.models.core_repulsion`) keeps MD out of the
holes a learned potential has where it saw no data.

Descriptors: ``"symmetry"`` (Behler G2/G4, dense, the default) or ``"power_spectrum"``
(:mod:`qdyn.descriptors.power_spectrum`: Bessel/Gaussian radial basis × real spherical
harmonics, ACE-like B2 invariants; all pairs or a JAX-MD neighbour list). With the
power spectrum, ``apply(params, R, system, neighbor=nbrs)`` takes a JAX-MD neighbour list
(from :func:`qdyn.descriptors.neighbors.neighbor_list_fn`), which periodic MD uses through
:func:`md_energy_fn`.

Parameter groups for staged training: everything the branch owns (encoding, circuit
weights, QSF channels, the control's branch MLP) and the integration weights on the
branch outputs are "quantum" — the group is "the branch under study", so the classical
control is scheduled exactly like the circuit it replaces; the descriptor MLP, integration
layer, scale and shift are "classical". The integration weights on the branch outputs start
at zero, so pretraining the classical part first and switching the branch on afterwards
starts from the classical solution.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax
    >>> from qdyn.models import hybrid
    >>> from qdyn.structures import water
    >>> model = hybrid.build(species=(1, 8), descriptor="power_spectrum", branch="qsf", n_qubits=4, layers=2)
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> R, system = water()
    >>> E = model.apply(params, R, system)
"""

from __future__ import annotations

import functools
from typing import Literal, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

from ..descriptors.power_spectrum import power_spectrum
from ..descriptors.symmetry_functions import make_local_check, species_and_descriptor
from ..nn import MLP
from ..quantum.qsf import qsf_circuit
from ..quantum.reupload import encoded_expvals, init_encoded, reupload_circuit
from ..system import System
from ..validation import QdynInputError
from .base import EnergyModel, make_species_table
from .core_repulsion import core_repulsion

DESCRIPTORS = ("symmetry", "power_spectrum")
BRANCHES = ("reupload", "qsf", "mlp")


def make_descriptor(species, *, descriptor: str = "symmetry", cutoff: float = 5.0, n_radial: int = 8,
                    zetas=(1.0, 4.0), eta_angular: float = 0.1, l_max: int = 2, radial_basis: str = "bessel"):
    """(sorted species, descriptor) for ``descriptor`` = "symmetry" or "power_spectrum"; both
    are called as ``G = d(R, species, mask, box)`` [n_atoms, d.size]."""
    if descriptor == "symmetry":
        return species_and_descriptor(species, cutoff=cutoff, n_radial=n_radial, zetas=zetas,
                                      eta_angular=eta_angular)
    if descriptor == "power_spectrum":
        d = power_spectrum(species, cutoff=cutoff, n_radial=n_radial, l_max=l_max, radial=radial_basis)
        return d.species, d
    raise QdynInputError(f"unknown descriptor {descriptor!r}; choose one of {DESCRIPTORS}")


def build(
    *,
    species: Sequence[int],
    n_qubits: int = 4,
    layers: int = 3,
    hidden: Sequence[int] = (16, 16),
    cutoff: float = 5.0,
    n_radial: int = 8,
    zetas: Sequence[float] = (1.0, 4.0),
    eta_angular: float = 0.1,
    init_circuit_std: float = 0.01,
    descriptor: Literal["symmetry", "power_spectrum"] = "symmetry",
    l_max: int = 2,
    radial_basis: Literal["bessel", "gaussian"] = "bessel",
    branch: Literal["reupload", "qsf", "mlp"] = "reupload",
    parity_average: bool = True,
    core_radii: Optional[Mapping[str, float]] = None,
) -> EnergyModel:
    """Build a hybrid model for the given elements (atomic numbers).

    Args:
        species: atomic numbers the model handles.
        n_qubits: qubits per atom circuit (for ``branch="mlp"``: the branch's output width).
        layers: re-uploading layers of the circuit (the control's hidden width is
            ``layers · n_qubits``).
        hidden: widths of the descriptor MLP.
        cutoff: descriptor cutoff r_c [Å].
        n_radial: radial functions per species.
        zetas, eta_angular: angular terms of the symmetry-function descriptor.
        init_circuit_std: std of the initial re-uploading circuit weights.
        descriptor: "symmetry" (dense) or "power_spectrum" (dense or neighbour list).
        l_max: highest spherical-harmonic degree of the power spectrum (1..3).
        radial_basis: "bessel" or "gaussian" (power spectrum).
        branch: "reupload", "qsf" (needs the power spectrum) or "mlp" (classical control).
        parity_average: QSF only: average over x → -x (reflection invariance).
        core_radii: optional wall r_in [Å] per species pair ("H-O": 0.8, ...) below the
            training data's shortest distances (:mod:`qdyn.models.core_repulsion`; zero
            where the data is, so it changes nothing there).

    Raises:
        QdynInputError: unknown descriptor or branch, or QSF without the power spectrum.
    """
    if branch not in BRANCHES:
        raise QdynInputError(f"unknown hybrid branch {branch!r}; choose one of {BRANCHES}")
    if branch == "qsf" and descriptor != "power_spectrum":
        raise QdynInputError("branch='qsf' reads the neighbour vectors of the spherical-harmonic expansion: "
                             "use descriptor='power_spectrum'")
    species, desc = make_descriptor(species, descriptor=descriptor, cutoff=cutoff, n_radial=n_radial, zetas=zetas,
                                    eta_angular=eta_angular, l_max=l_max, radial_basis=radial_basis)
    S = len(species)
    table = make_species_table(species)
    wall = core_repulsion(species, core_radii) if core_radii else None
    hidden = tuple(int(h) for h in hidden)
    n_feat = desc.size
    circuit = (reupload_circuit(n_qubits, layers) if branch == "reupload"
               else qsf_circuit(n_qubits, layers, parity_average=parity_average) if branch == "qsf" else None)
    n_branch = circuit.out_shape[0] if circuit else n_qubits
    n_cls = hidden[-1] if hidden else n_feat
    ctl_hidden = (layers * n_qubits,)

    def init(key):
        dtype = jnp.result_type(float)
        k_enc, k_w, k_mlp, k_int = jax.random.split(key, 4)
        p = {}
        if branch == "reupload":
            p.update(init_encoded(k_enc, k_w, circuit, n_feat, weight_std=init_circuit_std, dtype=dtype))
        elif branch == "mlp":
            ctl = MLP(hidden=ctl_hidden, param_dtype=dtype, out=n_qubits)
            p["ctl_mlp"] = ctl.init(k_enc, jnp.zeros((1, n_feat), dtype))["params"]
        else:
            k1, k2, k3 = jax.random.split(k_enc, 3)
            p["qsf_W"] = jax.random.normal(k1, (n_qubits, S, desc.n_radial), dtype) / jnp.sqrt(S * desc.n_radial)
            p["qsf_alpha"] = 2.0 + 0.5 * jax.random.normal(k2, circuit.param_shapes["alpha"], dtype)
            p["qsf_J"] = 0.5 * jax.random.normal(k3, circuit.param_shapes["J"], dtype)
        mlp = MLP(hidden=hidden, param_dtype=dtype)
        p.update({
            "mlp": mlp.init(k_mlp, jnp.zeros((1, n_feat), dtype))["params"],
            # integration layer per element; weights on the branch outputs start at 0 (see module doc)
            "int_q": jnp.zeros((S, n_branch), dtype),
            "int_c": jax.random.normal(k_int, (S, n_cls), dtype) / jnp.sqrt(n_branch + n_cls),
            "int_b": jnp.zeros((S,), dtype),
            "g_mean": jnp.zeros((n_feat,), dtype),
            "g_std": jnp.ones((n_feat,), dtype),
            "scale": jnp.ones((), dtype),
            "shift": jnp.zeros((S,), dtype),
        })
        return p

    def _features(params, R, system, neighbor):
        """(standardised invariants G [n, n_feat], branch outputs [n, n_branch])."""
        if descriptor == "symmetry":
            if neighbor is not None:
                raise ValueError("the symmetry-function descriptor is dense (all pairs); neighbour lists need "
                                 "descriptor='power_spectrum'")
            G = desc(R, system.species, system.mask, system.box)
            A = None
        else:
            A = desc.expand(R, system.species, system.mask, system.box, neighbor)
            G = desc.invariants(A, system.species, system.mask)
        G = (G - params["g_mean"]) / params["g_std"]
        if branch == "reupload":
            out = encoded_expvals(circuit, params, G)  # [A, n_qubits]
        elif branch == "mlp":
            out = jnp.tanh(MLP(hidden=ctl_hidden, param_dtype=R.dtype, out=n_qubits).apply(
                {"params": params["ctl_mlp"]}, G))
        else:
            v = jnp.einsum("askx,csk->acx", desc.vectors(A), params["qsf_W"])  # [A, n_qubits, 3]
            cparams = {"alpha": params["qsf_alpha"], "J": params["qsf_J"]}
            out = jax.vmap(circuit.expval, in_axes=(None, 0))(cparams, v)
        return G, out

    def atom_energies(params, R, system: System, neighbor=None):
        R = jnp.asarray(R)
        G, zq = _features(params, R, system, neighbor)
        hc = MLP(hidden=hidden, param_dtype=R.dtype).apply({"params": params["mlp"]}, G)
        idx = jnp.maximum(table[system.species], 0)
        e = jnp.sum(params["int_q"][idx] * zq, -1) + jnp.sum(params["int_c"][idx] * hc, -1) + params["int_b"][idx]
        e = params["scale"] * e + params["shift"][idx]
        if wall is not None:
            e = e + wall.atom_energies(R, system.species, system.mask, system.box, neighbor)
        return jnp.where(system.mask, e, 0.0)

    def apply(params, R, system: System, neighbor=None):
        return jnp.sum(atom_energies(params, R, system, neighbor))

    check = make_local_check(species, cutoff)

    config = {"family": "hybrid", "species": list(species), "n_qubits": n_qubits, "layers": layers,
              "hidden": list(hidden), "cutoff": cutoff, "n_radial": n_radial, "zetas": list(zetas),
              "eta_angular": eta_angular, "descriptor_size": n_feat, "descriptor": descriptor, "l_max": l_max,
              "radial_basis": radial_basis, "branch": branch, "parity_average": parity_average,
              "core_radii": dict(wall.radii) if wall is not None else None}
    name = {"reupload": f"Hybrid[{n_qubits}q]", "qsf": f"Hybrid-QSF[{n_qubits}q]",
            "mlp": f"Hybrid-control[MLP×{n_qubits}]"}[branch]
    return EnergyModel(init=init, apply=apply, check=check, name=name, species=species,
                       config=config, atom_energies=atom_energies)


@functools.lru_cache(maxsize=32)
def md_energy_fn(apply):
    """The MD energy ``(R, *, params, system, neighbor=None) -> E`` [eV] of a hybrid model's
    ``apply``, forwarding the JAX-MD neighbour list (``qdyn.md.model_energy_fn`` drops it, as
    dense molecular models need none). Cached, so MD runs reuse their compiled blocks."""

    def energy_fn(R, *, params, system, neighbor=None):
        return apply(params, R, system, neighbor)

    return energy_fn
