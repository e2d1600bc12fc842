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
* ``"custom"``: the user's PennyLane quantum function (:mod:`qdyn.quantum.user`,
  ``circuit: {qfunc: "module:function", wires, weight_shapes, observable, input_shape}``):
  it receives the bounded angles ``π · tanh(A G_i + b)`` [*input_shape] and its weights;
  the outputs are the observable's terms (default ``⟨XX+YY+ZZ⟩`` of every wire pair; ``z``:
  ``⟨Z_q⟩``). Default execution ``default.qubit`` with backprop;
* ``"mlp"``: the classical-only control — the circuit replaced by a tanh MLP
  ``G → layers·n_qubits → n_qubits`` (tanh-bounded outputs like ⟨Z⟩) of the same width and,
  within a few percent, the same parameter count as the re-uploading circuit and its encoding.

An integration layer (one per element) maps [branch ∥ MLP] to the atomic energy;
``E = Σ_i scale · e_i + shift_{Z_i}``. Invariant to rotations, reflections, translations and
permutations of like atoms (the descriptors and the QSF are), extensive (a sum of local
terms) and smooth (C² cutoffs). An optional fixed pair wall below the training data's
shortest distances (``core_radii``, :mod:`qdyn.models.core_repulsion`) keeps MD out of the
holes a learned potential has where it saw no data.

Descriptors (:func:`qdyn.descriptors.make_descriptor`): ``"symmetry"`` (Behler G2/G4, the
default) or ``"power_spectrum"`` (:mod:`qdyn.descriptors.power_spectrum`: Bessel/Gaussian
radial basis × real spherical harmonics, ACE-like B2 invariants). Both work on all pairs or
on a JAX-MD neighbour list: ``apply(params, R, system, neighbor=nbrs)`` takes one (from
:func:`qdyn.descriptors.neighbors.neighbor_list_fn`; the symmetry functions need the
``Dense`` format), which periodic MD uses through :func:`qdyn.md.model_energy_fn`.

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
    >>> params = jax.jit(model.init)(jax.random.PRNGKey(0))   # jitted: one compile, not op by op
    >>> R, system = water()
    >>> E = jax.jit(model.apply)(params, R, system)
"""

from __future__ import annotations

from math import prod
from typing import Literal, Optional, Sequence

import jax
import jax.numpy as jnp
from pydantic import Field, model_validator

from ..elements import make_species_table
from ..nn import MLP
from ..quantum.qsf import qsf_circuit
from ..quantum.reupload import encoded_expvals, init_encoded, reupload_circuit
from ..quantum.user import UserCircuit, init_weights, user_circuit
from ..system import System
from ..validation import QdynInputError, make_local_check
from .base import CLASSICAL, FIXED, QUANTUM, EnergyModel
from .config import (CoreRadii, DescriptorSettings, ModelConfig, QuantumSettings, keyword_builder, resolve_species,
                     resolved_core_radii)
from .core_repulsion import core_repulsion
from .electrostatics import ElectrostaticsField, with_electrostatics

class HybridConfig(ModelConfig, DescriptorSettings, QuantumSettings, ElectrostaticsField):
    """Settings of the hybrid model (module docstring)."""

    family: Literal["hybrid"] = "hybrid"
    species: Optional[list[int]] = Field(None, description="atomic numbers modelled (default: the dataset's)")
    n_qubits: int = Field(4, ge=1, le=12, description="qubits per atom circuit (branch mlp: its output width)")
    layers: int = Field(3, ge=1, description="re-uploading layers (the control's hidden width is layers x n_qubits)")
    hidden: list[int] = Field(default_factory=lambda: [16, 16], description="widths of the descriptor MLP")
    branch: Literal["reupload", "qsf", "custom", "mlp"] = Field(
        "reupload", description="angle-encoded circuit | quantum symmetry function (power_spectrum) | "
                                "your own PennyLane qfunc (`circuit`) | classical control")
    circuit: Optional[UserCircuit] = Field(None, description="branch custom: the user's qfunc (import path), wires, "
                                                             "weight shapes, observable, input_shape")
    parity_average: bool = Field(True, description="qsf: average over inversion (reflection invariance)")
    core_radii: CoreRadii = Field(None, description=(
        "pair wall r_in [Å] per species pair ('H-O': 0.8, ...) below the data's shortest distances; 'auto': "
        "0.9 x the shortest distance of each pair in the training set (resolved by training)"))
    init_circuit_std: float = Field(0.01, ge=0, description="std of the initial re-uploading circuit weights")

    @model_validator(mode="before")
    @classmethod
    def _custom_branch(cls, data):
        if not isinstance(data, dict) or data.get("branch") != "custom":
            return data
        if not data.get("circuit"):
            raise ValueError("branch 'custom' needs a circuit: {qfunc: 'module:function', wires, weight_shapes}")
        data = dict(data)
        wires = data["circuit"].wires if isinstance(data["circuit"], UserCircuit) else data["circuit"].get("wires")
        if data.setdefault("n_qubits", wires) != wires:
            raise ValueError(f"n_qubits {data['n_qubits']} differs from circuit.wires {wires}: give one")
        # a user circuit is arbitrary: PennyLane's default.qubit with backprop runs any of them
        data.setdefault("execution", {"backend": "pennylane"})
        return data

    @model_validator(mode="after")
    def _circuit_only_for_custom(self):
        if self.circuit is not None and self.branch != "custom":
            raise ValueError(f"circuit is read by branch 'custom' only, not {self.branch!r}")
        return self

    def build(self, species: Sequence[int] = ()) -> EnergyModel:
        short = _build(self.model_copy(update={"species": resolve_species(self.species, species, "hybrid")}))
        return with_electrostatics(short, self.electrostatics)


def _build(cfg: HybridConfig) -> EnergyModel:
    """Build a hybrid model (see :class:`HybridConfig`).

    Raises:
        QdynInputError: QSF without the power spectrum, or core radii still "auto".
    """
    n_qubits, layers, cutoff, descriptor, branch = cfg.n_qubits, cfg.layers, cfg.cutoff, cfg.descriptor, cfg.branch
    parity_average, init_circuit_std = cfg.parity_average, cfg.init_circuit_std
    core_radii = resolved_core_radii(cfg.core_radii)
    if branch == "qsf" and descriptor != "power_spectrum":
        raise QdynInputError("branch='qsf' reads the neighbour vectors of the spherical-harmonic expansion: "
                             "use descriptor='power_spectrum'")
    species, desc = cfg.make_descriptor(cfg.species)
    S = len(species)
    table = make_species_table(species)
    wall = core_repulsion(species, core_radii) if core_radii else None
    hidden = tuple(int(h) for h in cfg.hidden)
    n_feat = desc.size
    input_shape = tuple(cfg.circuit.input_shape or [n_qubits]) if branch == "custom" else ()
    circuit = (reupload_circuit(n_qubits, layers) if branch == "reupload"
               else qsf_circuit(n_qubits, layers, parity_average=parity_average) if branch == "qsf"
               else user_circuit(cfg.circuit, input_shape, reduce="none") if branch == "custom" else None)
    n_branch = circuit.out_shape[0] if circuit else n_qubits
    if circuit is None and cfg.execution.uses_pennylane:
        raise QdynInputError("branch='mlp' has no circuit: execution.backend must be 'statevector'")
    run_circuit = cfg.circuit_fn(circuit) if circuit else None
    n_cls = hidden[-1] if hidden else n_feat
    ctl_hidden = (layers * n_qubits,)

    def init(key):
        dtype = jnp.result_type(float)
        k_enc, k_w, k_mlp, k_int = jax.random.split(key, 4)
        p = {}
        if branch == "reupload":
            p.update(init_encoded(k_enc, k_w, circuit, n_feat, weight_std=init_circuit_std, dtype=dtype))
        elif branch == "custom":
            n_in = prod(input_shape)
            p["enc_A"] = jax.random.normal(k_enc, (n_in, n_feat), dtype) / jnp.sqrt(n_feat)
            p["enc_b"] = jnp.zeros((n_in,), dtype)
            p["qweights"] = init_weights(k_w, cfg.circuit, dtype)
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
        if branch == "qsf":  # the QSF reads the neighbour vectors of the density expansion too
            A = desc.expand(R, system.species, system.mask, system.box, neighbor)
            G = desc.invariants(A, system.species, system.mask)
        else:
            G = desc(R, system.species, system.mask, system.box, neighbor)
        G = (G - params["g_mean"][None, :]) / params["g_std"][None, :]
        if branch == "reupload":
            out = encoded_expvals(run_circuit, params, G)  # [A, n_qubits]
        elif branch == "custom":  # bounded angles, as the re-uploading circuit's
            angles = jnp.pi * jnp.tanh(G @ params["enc_A"].T + params["enc_b"][None, :])
            angles = angles.reshape((G.shape[0],) + input_shape)
            out = jax.vmap(run_circuit, in_axes=(None, 0))(params["qweights"], angles)
        elif branch == "mlp":
            out = jnp.tanh(MLP(hidden=ctl_hidden, param_dtype=R.dtype, out=n_qubits).apply(
                {"params": params["ctl_mlp"]}, G))
        else:
            v = jnp.einsum("askx,csk->acx", desc.vectors(A), params["qsf_W"])  # [A, n_qubits, 3]
            cparams = {"alpha": params["qsf_alpha"], "J": params["qsf_J"]}
            out = jax.vmap(run_circuit, in_axes=(None, 0))(cparams, v)
        return G, out

    def atom_terms(params, R, system: System, neighbor=None):
        R = jnp.asarray(R)
        G, zq = _features(params, R, system, neighbor)
        hc = MLP(hidden=hidden, param_dtype=R.dtype).apply({"params": params["mlp"]}, G)
        idx = jnp.maximum(table[system.species], 0)
        e = jnp.sum(params["int_q"][idx] * zq, -1) + jnp.sum(params["int_c"][idx] * hc, -1) + params["int_b"][idx]
        e = params["scale"] * e + params["shift"][idx]
        if wall is not None:
            e = e + wall.atom_energies(R, system.species, system.mask, system.box, neighbor)
        return jnp.where(system.mask, e, 0.0), G

    def atom_energies(params, R, system: System, neighbor=None):
        return atom_terms(params, R, system, neighbor)[0]

    def apply(params, R, system: System, neighbor=None):
        return jnp.sum(atom_energies(params, R, system, neighbor))

    check = make_local_check(species, cutoff)
    radii = dict(wall.radii) if wall is not None else None
    config = {**cfg.model_copy(update={"core_radii": radii}).settings(), "descriptor_size": n_feat}
    name = {"reupload": f"Hybrid[{n_qubits}q]", "qsf": f"Hybrid-QSF[{n_qubits}q]",
            "custom": f"Hybrid-custom[{n_qubits}q]", "mlp": f"Hybrid-control[MLP×{n_qubits}]"}[branch]
    return EnergyModel(init=init, apply=apply, check=check, name=name, species=species, config=config,
                       atom_energies=atom_energies, groups=GROUPS, features=lambda R, system: desc(
                           R, system.species, system.mask, system.box), atom_terms=atom_terms)


# Everything the branch owns and the integration weights on its outputs are "quantum" (the
# branch under study, so the classical control is scheduled exactly like the circuit it
# replaces); the descriptor MLP, integration layer, scale and shift are "classical".
GROUPS = {**{k: QUANTUM for k in ("enc_A", "enc_b", "qW", "qweights", "int_q", "qsf_W", "qsf_alpha", "qsf_J",
                                   "ctl_mlp")},
          **{k: CLASSICAL for k in ("mlp", "int_c", "int_b", "scale", "shift")},
          "g_mean": FIXED, "g_std": FIXED}

build = keyword_builder(HybridConfig)
