"""Multistate (diabatic) models: a symmetric diabatic potential matrix W(R) [n, n] in eV.

A multistate model learns the *diabatic* matrix; the adiabatic energies are its
eigenvalues, the adiabatic forces are ``-∇E_i`` and, by Hellmann–Feynman,
``∇E_i = u_iᵀ (∇W) u_i`` with ``u_i`` the eigenvectors. Trained on adiabatic data only
(energies and, where the data has them, forces of every state), the network is free to
choose W; smoothness and diabaticity then come from the architecture (every entry of W is
a smooth invariant function of R) and from optional regularisers in the training loss
(:mod:`qdyn.train.losses`): this is *diabatization by learning* in the spirit of Shu and
Truhlar (J. Chem. Theory Comput. 16, 6456, 2020) — the diabats are whatever smooth matrix
reproduces the adiabats, no wavefunction property is used.

Backbones (all per-atom, on :class:`qdyn.descriptors.SymmetryFunctions`, standardised):

* ``"bpnn"`` — one tanh MLP per element maps G_i to ``n + n(n-1)/2`` outputs: atom i's
  contribution to each diabatic diagonal and to each coupling.
* ``"hybrid"`` — the hybrid model's per-atom data re-uploading circuit (outputs ⟨Z_q⟩) in
  parallel with an MLP; a per-element linear integration layer maps both to the W
  contributions (weights on the circuit outputs start at zero, as in
  :mod:`qdyn.models.hybrid`).
* ``"quantum"`` — the circuit alone: the W contributions are linear in the invariant
  observables ⟨Z_q⟩ of the per-atom circuit, so every non-constant part of W comes from
  the circuit. (A siVQLM template for CaH2 would need Ca's SU(2) encoding and its own
  exchange pattern; the per-atom circuit works for any element set, so it is the quantum
  head here.)

``W_kk = scale · Σ_i o_ik + Σ_i shift_{Z_i} + offset_k``;
``W_kl = scale · Σ_i o_i,(kl)`` (k < l). Everything is a sum of per-atom invariant terms,
so W is invariant under rotations, reflections, translations and permutations of like
atoms, and so are the adiabats. A coupling's *sign* is a gauge: flipping the sign of one
diabat flips every coupling involving it and leaves the adiabats unchanged. Training from
adiabatic data cannot fix it; the model's choice is smooth (it is a smooth function of
R), which is all dynamics needs. Compare couplings between models only up to that sign.

Odd couplings (``odd_couplings={"0-1": ["H"]}``): where two states belong to different
irreducible representations of the molecule's symmetry, their coupling must change sign under
the symmetry operation, and on the symmetric geometries it vanishes, so the two diabats cross
there in a true conical intersection (a seam of dimension n_internal − 2). An invariant
coupling cannot do that: it makes the crossing an avoided one. For an odd pair the coupling is

``W_kl = scale · Σ_i o_i,(kl) · Π_{i<j like} (h_i,kl − h_j,kl)``

an invariant amplitude times an alternating (Vandermonde) product over pairs of like atoms of
the listed elements, with ``h_i,kl`` one more per-atom output of the same backbone (an
invariant scalar of atom i's environment). The product changes sign under the exchange of any
two such atoms, and is invariant otherwise: W_kl transforms as the sign representation of
their permutation group, the diagonal stays invariant, and the adiabats stay invariant (a
sign flip of W_kl is the gauge above). For AB2 (CaH2) it is ``h_H1 − h_H2``, odd along the
antisymmetric stretch and zero on the C2v plane (¹A1/¹B2). The sign of W_kl then also depends
on the order in which like atoms are listed (again a gauge; a trajectory keeps its order).

Degeneracies: for n = 2 the eigenvalues are written in closed form
``E± = (a + d)/2 ± sqrt(((a - d)/2)² + b²)`` with a guarded square root (double-where), so
values are exact and gradients stay finite at an exact crossing (where the true gradient
of a conical intersection is undefined). For n > 2 :func:`eigvalsh_hf` differentiates
eigenvalues by Hellmann–Feynman, which has no 1/gap term; second derivatives (force
training) do and are only valid away from degeneracies.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax
    >>> from qdyn.models import multistate
    >>> from qdyn.system import System
    >>> import numpy as np
    >>> model = multistate.build(species=(1, 20), n_states=2, backbone="bpnn", hidden=(8,))
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> R = np.array([[0.0, 0.0, 0.0], [2.05, 0.0, 0.0], [-2.0, 0.4, 0.0]])
    >>> system = System.create(["Ca", "H", "H"])
    >>> W = model.diabatic(params, R, system)          # [2, 2] eV, symmetric
    >>> E = model.adiabatic(params, R, system)         # [2] eV, ascending
    >>> E0 = model.apply(params, R, system)            # ground state, = E[0]
"""

from __future__ import annotations

from typing import Callable, Literal, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, field_validator

from ..elements import atomic_number, make_species_table
from ..geometry import safe_norm
from ..nn import MLP, species_mlp
from ..quantum.reupload import encoded_expvals, init_encoded, reupload_circuit
from ..system import System
from ..validation import QdynInputError, make_local_check
from .base import CLASSICAL, FIXED, QUANTUM, EnergyModel
from .config import (CoreRadii, DescriptorSettings, ModelConfig, QuantumSettings, keyword_builder, resolve_species,
                     resolved_core_radii)
from .core_repulsion import core_repulsion

BACKBONES = ("bpnn", "hybrid", "quantum")

# Below this squared half-gap [eV²] the closed-form 2×2 eigenvalues take no gradient through
# the square root (it would be infinite at an exact crossing); above it they are exact.
_DEGENERACY_EPS2 = 1e-20


@jax.custom_jvp
def eigvalsh_hf(W):
    """Ascending eigenvalues of a symmetric matrix [n, n], differentiated by Hellmann–Feynman
    (``dλ_i = u_iᵀ dW u_i``): finite first derivatives even at degeneracies."""
    return jnp.linalg.eigh(W)[0]


@eigvalsh_hf.defjvp
def _eigvalsh_hf_jvp(primals, tangents):
    (W,), (dW,) = primals, tangents
    lam, U = jnp.linalg.eigh(W)
    return lam, jnp.einsum("ji,jk,ki->i", U, dW, U)


def eigvals_2x2(W):
    """Ascending eigenvalues [2] of a symmetric 2×2 matrix in closed form, with a guarded
    square root so that gradients are finite at an exact crossing."""
    a, d, b = W[0, 0], W[1, 1], 0.5 * (W[0, 1] + W[1, 0])
    v = jnp.stack([0.5 * (a - d), b])
    root, safe = safe_norm(v, tiny=_DEGENERACY_EPS2)
    # at a crossing the root keeps its value but passes no (infinite) gradient
    root = jnp.where(safe, root, jax.lax.stop_gradient(jnp.sqrt(jnp.sum(v * v))))
    mean = 0.5 * (a + d)
    return jnp.stack([mean - root, mean + root])


def adiabatic_from_diabatic(W):
    """Adiabatic energies [n] (ascending) of a diabatic matrix W [n, n]."""
    return eigvals_2x2(W) if W.shape[-1] == 2 else eigvalsh_hf(W)


class MultistateConfig(ModelConfig, DescriptorSettings, QuantumSettings):
    """Settings of a diabatic multistate model; it needs data with E_states."""

    family: Literal["multistate"] = "multistate"
    species: Optional[list[int]] = Field(None, description="atomic numbers modelled (default: the dataset's)")
    backbone: Literal["bpnn", "hybrid", "quantum"] = Field("bpnn", description="module docstring")
    n_states: int = Field(2, ge=2, description="states n (W is n x n); the data must have as many")
    hidden: list[int] = Field(default_factory=lambda: [32, 32], description="MLP widths (bpnn, hybrid)")
    n_qubits: int = Field(4, ge=1, le=12, description="qubits per atom circuit (hybrid, quantum)")
    layers: int = Field(3, ge=1, description="re-uploading layers (hybrid, quantum)")
    core_radii: CoreRadii = Field(None, description=(
        "pair wall r_in [Å] per species pair ('H-H': 0.5, ...), added to every diabat alike (gaps, couplings "
        "and NACs untouched); 'auto': 0.9 x the shortest distance of each pair in the training set"))
    odd_couplings: dict[str, list[Union[int, str]]] = Field(default_factory=dict, description=(
        "state pairs 'k-l' (k < l, 0-based) whose coupling W_kl (eV) changes sign under every exchange of two "
        "like atoms of the listed elements, e.g. {'0-1': ['H']} for states of different symmetry under H<->H "
        "(CaH2's 1A1/1B2: a true conical intersection); pairs not listed are even (invariant)"))

    @field_validator("odd_couplings")
    @classmethod
    def _canonical_odd_couplings(cls, value):
        return canonical_odd_couplings(value)

    def build(self, species: Sequence[int] = ()) -> EnergyModel:
        return _build(self.model_copy(update={"species": resolve_species(self.species, species, "multistate")}))


def canonical_odd_couplings(spec: dict) -> dict[str, list[int]]:
    """``{"k-l": [Z, ...]}`` with k < l and atomic numbers (symbols accepted), sorted; a key that
    is not two state indices, or an element qdyn does not know, is a :class:`QdynInputError`."""
    out = {}
    for key, elems in spec.items():
        parts = str(key).split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or int(parts[0]) == int(parts[1]):
            raise QdynInputError(f"odd_couplings: key {key!r} is not a pair of two different state indices 'k-l' "
                                 "(e.g. '0-1')")
        k, l = sorted(int(p) for p in parts)
        if not elems:
            raise QdynInputError(f"odd_couplings[{key!r}]: name the elements whose exchange flips the sign, e.g. ['H']")
        try:
            zs = sorted({atomic_number(e) for e in elems})
        except (ValueError, TypeError) as exc:
            raise QdynInputError(f"odd_couplings[{key!r}]: {exc}") from None
        out[f"{k}-{l}"] = zs
    return out


def _odd_pair_table(odd_couplings: dict, n: int, species: Sequence[int]):
    """[(position of the pair among the couplings, (Z, ...)), ...] for the odd pairs."""
    iu = list(zip(*np.triu_indices(n, 1)))
    table = []
    for key, zs in odd_couplings.items():
        k, l = (int(p) for p in key.split("-"))
        if l >= n:
            raise QdynInputError(f"odd_couplings: pair {key!r} needs states 0..{l}, the model has n_states = {n}")
        missing = sorted(set(zs) - set(int(z) for z in species))
        if missing:
            raise QdynInputError(f"odd_couplings[{key!r}]: elements {missing} are not among the modelled "
                                 f"species {list(species)}")
        table.append((iu.index((k, l)), tuple(zs)))
    return table


def alternating_feature(h, species, mask, elements: Sequence[int]):
    """``Π_{i<j} (h_i − h_j)`` over pairs of like real atoms whose element is in ``elements``.

    With ``h`` [A] per-atom invariant scalars this is the Vandermonde product: it changes sign
    under the exchange of any two like atoms of those elements (the *sign* representation of
    their permutation group) and is otherwise invariant; with two like atoms it is
    ``h_1 − h_2``. It vanishes wherever two such atoms are equivalent (h_i = h_j), e.g. on the
    C2v plane of an AB2 molecule. Padding atoms and other elements contribute a factor 1.

    Args:
        h: [A] per-atom scalars.
        species: int [A] atomic numbers.  mask: bool [A], real atoms.
        elements: the atomic numbers whose exchanges flip the sign (static).
    """
    n_atoms = h.shape[0]
    i, j = np.triu_indices(n_atoms, 1)
    chosen = jnp.isin(species, jnp.asarray(elements, species.dtype))
    like = (species[i] == species[j]) & chosen[i] & mask[i] & mask[j]
    return jnp.prod(jnp.where(like, h[i] - h[j], 1.0))


def _build(cfg: MultistateConfig) -> EnergyModel:
    """Build a multistate model (see :class:`MultistateConfig`): an :class:`EnergyModel` whose
    ``apply`` is the adiabatic ground state, with ``diabatic``, ``adiabatic`` and ``n_states``."""
    backbone, n_states, n_qubits, layers = cfg.backbone, cfg.n_states, cfg.n_qubits, cfg.layers
    core_radii = resolved_core_radii(cfg.core_radii)
    n = int(n_states)
    species, sf = cfg.make_descriptor(cfg.species)
    table = make_species_table(species)
    wall = core_repulsion(species, core_radii) if core_radii else None
    hidden = tuple(int(h) for h in cfg.hidden)
    iu = np.triu_indices(n, 1)
    n_pairs = len(iu[0])
    odd = _odd_pair_table(cfg.odd_couplings, n, species)
    # per-atom outputs: n diagonals, n_pairs coupling amplitudes, one sign-carrying scalar per odd pair
    n_even_out = n + n_pairs
    n_out = n_even_out + len(odd)
    n_feat = sf.size
    S = len(species)
    use_mlp = backbone in ("bpnn", "hybrid")
    circuit = reupload_circuit(n_qubits, layers)
    if backbone == "bpnn" and cfg.execution.uses_pennylane:
        raise QdynInputError("backbone='bpnn' has no circuit: execution.backend must be 'statevector'")
    run_circuit = cfg.circuit_fn(circuit)
    nets = species_mlp(species, hidden, out=n_out)

    def init(key):
        dtype = jnp.result_type(float)
        k_net, k_enc, k_w, k_mlp, k_int = jax.random.split(key, 5)
        p = {
            "g_mean": jnp.zeros((n_feat,), dtype),
            "g_std": jnp.ones((n_feat,), dtype),
            "scale": jnp.ones((), dtype),
            "shift": jnp.zeros((S,), dtype),
            # per-state constant on the diagonal: training sets it to the mean excitation energies
            "state_offset": jnp.zeros((n,), dtype),
        }
        if backbone == "bpnn":
            p["nets"] = nets.init(k_net, n_feat, dtype)
            return p
        # with the circuit as the only feature map it is trainable from the start, readout random
        p.update(init_encoded(k_enc, k_w, circuit, n_feat, weight_std=0.3 if backbone == "quantum" else 0.01,
                              dtype=dtype))
        if backbone == "quantum":
            p["int_q"] = jax.random.normal(k_int, (S, n_qubits, n_out), dtype) / jnp.sqrt(n_qubits)
        else:
            p["int_q"] = jnp.zeros((S, n_qubits, n_out), dtype)
            p["mlp"] = MLP(hidden=hidden, param_dtype=dtype).init(k_mlp, jnp.zeros((1, n_feat), dtype))["params"]
            h = hidden[-1] if hidden else n_feat
            p["int_c"] = jax.random.normal(k_int, (S, h, n_out), dtype) / jnp.sqrt(h + n_qubits)
        p["int_b"] = jnp.zeros((S, n_out), dtype)
        return p

    def features(R, system: System, neighbor=None):
        return sf(R, system.species, system.mask, system.box, neighbor)

    def atom_outputs(params, R, system: System, neighbor=None):
        """Per-atom contributions [A, n_out] (diagonals, couplings, then the scalars of the odd
        couplings' alternating features), 0 for padding."""
        R = jnp.asarray(R)
        G = (features(R, system, neighbor) - params["g_mean"][None, :]) / params["g_std"][None, :]
        idx = jnp.maximum(table[system.species], 0)
        if backbone == "bpnn":
            o = nets.apply(params["nets"], G, idx, R.dtype)
        else:
            zq = encoded_expvals(run_circuit, params, G)  # [A, n_qubits]
            o = jnp.einsum("aq,aqo->ao", zq, params["int_q"][idx]) + params["int_b"][idx]
            if use_mlp:
                hc = MLP(hidden=hidden, param_dtype=R.dtype).apply({"params": params["mlp"]}, G)
                o = o + jnp.einsum("ah,aho->ao", hc, params["int_c"][idx])
        return jnp.where(system.mask[:, None], o, 0.0)

    def diabatic(params, R, system: System, neighbor=None):
        """Diabatic matrix W [n, n] eV (symmetric) of one configuration."""
        per_atom = atom_outputs(params, R, system, neighbor)
        o = params["scale"] * jnp.sum(per_atom[:, :n_even_out], axis=0)  # [n + n_pairs], invariant
        idx = jnp.maximum(table[system.species], 0)
        e_atoms = jnp.sum(jnp.where(system.mask, params["shift"][idx], 0.0))
        diag = o[:n] + e_atoms + params["state_offset"]
        if wall is not None:
            diag = diag + wall(R, system.species, system.mask, system.box, neighbor)
        couplings = o[n:]
        for c, (pair, elements) in enumerate(odd):
            # invariant amplitude x alternating feature: odd under exchange of like atoms of `elements`
            sign_carrier = alternating_feature(per_atom[:, n_even_out + c], system.species, system.mask, elements)
            couplings = couplings.at[pair].multiply(sign_carrier)
        W = jnp.diag(diag)
        W = W.at[iu].set(couplings)
        return W.at[(iu[1], iu[0])].set(couplings)

    def adiabatic(params, R, system: System, neighbor=None):
        """Adiabatic energies E [n] eV, ascending."""
        return adiabatic_from_diabatic(diabatic(params, R, system, neighbor))

    def apply(params, R, system: System, neighbor=None):
        return adiabatic(params, R, system, neighbor)[0]

    check = make_local_check(species, cfg.cutoff)
    radii = dict(wall.radii) if wall is not None else None
    config = {**cfg.model_copy(update={"core_radii": radii}).settings(), "descriptor_size": n_feat}
    groups = {**{k: QUANTUM for k in ("enc_A", "enc_b", "qW", "int_q")},
              **{k: CLASSICAL for k in ("nets", "mlp", "int_c", "int_b", "scale", "shift", "state_offset")},
              "g_mean": FIXED, "g_std": FIXED}
    name = f"Multistate[{backbone},{n}" + "".join(f",odd {k}" for k in cfg.odd_couplings) + "]"
    return EnergyModel(init=init, apply=apply, check=check, name=name, species=species,
                       config=config, groups=groups, features=features, diabatic=diabatic, adiabatic=adiabatic,
                       n_states=n)


build = keyword_builder(MultistateConfig)


def diabatic_and_adiabatic_fn(model: EnergyModel) -> Callable:
    """``(params, R, system) -> (W [n, n] eV, dW [n, n, A, 3] eV/Å, E [n] eV, F [n, A, 3] eV/Å)``.

    One forward-mode Jacobian of W serves everything: ``F_i = -Σ_kl ∂E_i/∂W_kl ∇W_kl``
    (= ``-u_iᵀ ∇W u_i``, Hellmann–Feynman), and ``dW`` is what the smoothness regulariser
    and non-adiabatic couplings need.
    """
    diabatic = model.diabatic

    def fn(params, R, system):
        W = diabatic(params, R, system)
        dW = jax.jacfwd(diabatic, argnums=1)(params, R, system)  # [n, n, A, 3]
        E = adiabatic_from_diabatic(W)
        dEdW = jax.jacfwd(adiabatic_from_diabatic)(W)  # [n, n, n]
        return W, dW, E, -jnp.einsum("ikl,klax->iax", dEdW, dW)

    return fn


def adiabatic_energies_and_forces_fn(model: EnergyModel) -> Callable:
    """``(params, R, system) -> (E [n] eV, F [n, A, 3] eV/Å)`` with ``F_i = -∇E_i`` (pure)."""
    fn = diabatic_and_adiabatic_fn(model)

    def ef(params, R, system):
        _, _, E, F = fn(params, R, system)
        return E, F

    return ef
