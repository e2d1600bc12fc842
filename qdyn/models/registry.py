"""Build any qdyn model from its configuration dict (what run directories store)."""

from __future__ import annotations

from typing import Sequence

from . import bpnn, generic, hybrid, multistate, sivqlm
from .base import EnergyModel


def build_model(config: dict, *, species: Sequence[int] = ()) -> EnergyModel:
    """``config`` is a model config (``family`` + hyperparameters); ``species`` are the
    dataset's elements (used by families that are not tied to a template)."""
    c = dict(config)
    family = c.pop("family")
    if family == "sivqlm":
        return sivqlm.build(c["template"], rep=c.get("rep"), layers=c["layers"], blocks=c["blocks"],
                            coupling=c.get("coupling", "ring"), symmetry_breaking=c.get("symmetry_breaking", False))
    if family == "generic":
        return generic.build(c["template"], rep=c.get("rep"), layers=c["layers"], blocks=c["blocks"])
    if family == "bpnn":
        sp = c.get("species") or species
        if not sp:
            raise ValueError("bpnn needs the species it models (from the dataset)")
        return bpnn.build(species=sp, hidden=c["hidden"], cutoff=c["cutoff"], n_radial=c["n_radial"],
                          zetas=c["zetas"], eta_angular=c["eta_angular"])
    if family == "hybrid":
        sp = c.get("species") or species
        if not sp:
            raise ValueError("hybrid needs the species it models (from the dataset)")
        # descriptor/branch keys are absent from configs written before they existed: defaults
        return hybrid.build(species=sp, n_qubits=c["n_qubits"], layers=c["layers"], hidden=c["hidden"],
                            cutoff=c["cutoff"], n_radial=c["n_radial"], zetas=c["zetas"], eta_angular=c["eta_angular"],
                            descriptor=c.get("descriptor", "symmetry"), l_max=c.get("l_max", 2),
                            radial_basis=c.get("radial_basis", "bessel"), branch=c.get("branch", "reupload"),
                            parity_average=c.get("parity_average", True), core_radii=c.get("core_radii"))
    if family == "multistate":
        sp = c.get("species") or species
        if not sp:
            raise ValueError("multistate needs the species it models (from the dataset)")
        return multistate.build(species=sp, n_states=c["n_states"], backbone=c["backbone"], hidden=c["hidden"],
                                n_qubits=c["n_qubits"], layers=c["layers"], cutoff=c["cutoff"], n_radial=c["n_radial"],
                                zetas=c["zetas"], eta_angular=c["eta_angular"], core_radii=c.get("core_radii"))
    raise ValueError(f"unknown model family {family!r}")


# Parameter groups for optimisers: circuit angles and strengths (and, in the hybrid model,
# the feature-to-angle encoding and the integration weights on circuit outputs) are
# "quantum", everything else that training may touch is "classical", descriptor statistics
# are fixed.
# The hybrid's quantum-symmetry-function branch (qsf_*) and its classical control's branch MLP
# (ctl_mlp) are in the same group as the circuit they stand for, so staged training treats
# the control exactly like the circuit it replaces.
QUANTUM_KEYS = frozenset({"alpha", "J", "eps", "a", "W", "enc_A", "enc_b", "qW", "int_q",
                          "qsf_W", "qsf_alpha", "qsf_J", "ctl_mlp"})
FIXED_KEYS = frozenset({"g_mean", "g_std"})


def param_labels(params: dict) -> dict:
    """A pytree of group labels matching ``params`` (for ``optax.multi_transform``)."""
    import jax

    def label(key):
        return "quantum" if key in QUANTUM_KEYS else "fixed" if key in FIXED_KEYS else "classical"

    return {k: jax.tree_util.tree_map(lambda _: label(k), v) for k, v in params.items()}
