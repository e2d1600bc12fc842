"""Long-range electrostatics for any descriptor-based model: learned charges, Coulomb/Ewald.

A short-range model (cutoff ~5 Å) cannot see the interaction of two molecules 8 Å apart,
nor the polarisation of a cluster larger than those it was trained on. Fourth-generation
networks (Ko, Finkler, Goedecker, Behler, Nat. Commun. 12, 398 (2021)) add a long-range
term built from **atomic charges** predicted by the network and total-charge constrained:

    E = E_short(R) + E_elec(q, R),   q_i from the descriptor of atom i

Two ways to get the charges (``scheme``), both exact in the total charge Q:

* ``neutral``: a small per-species head predicts q̃_i from the atom's descriptor; the excess
  is spread evenly, ``q_i = q̃_i - (Σq̃ - Q)/N`` (a neutrality projection);
  ``E_elec = ½ k_e qᵀΦq``.
* ``qeq``: the head predicts an electronegativity χ_i; each species has a learned hardness
  J_Z > 0; the charges minimise ``E_qeq(q) = Σ χ_i q_i + ½ Σ J_i q_i² + ½ k_e qᵀΦq``
  subject to ``Σq = Q`` (charge equilibration, Rappé & Goddard 1991; Ghasemi et al.
  PRB 92, 045131 (2015)), a linear solve; ``E_elec = E_qeq(q*)``. Charge flows in response
  to the whole geometry, not only to each atom's neighbourhood.

**Damping (the short-range handoff).** Charges are Gaussians of width σ
(``charge_width``): two of them interact through ``erf(r/a)/r`` with ``a = 2σ``, which is
1/r beyond ~2a and bounded (no singularity, no large forces) at bonded distances, where the
short-range model owns the energy. Φ includes each Gaussian's self-energy, so Φ is positive
definite and the QEq solve always has one solution. The short-range model is fit jointly to
what the Coulomb term leaves, so nothing is counted twice.

**Periodic boxes (Ewald).** ``erf(r/a)/r = 1/r - erfc(r/a)/r``; the 1/r part is split by an
Ewald parameter α into ``erfc(αr)/r`` summed over images in real space and a reciprocal sum
``(4π/V) Σ_{k≠0} exp(-k²/4α²)/k² cos(k·r_ij)``; a charged cell gets the neutralising
background ``-π Q²/(2Vα²)``. One real-space kernel ``(erfc(αr) - erfc(r/a))/r`` serves
molecules (α = 0, no images, no reciprocal sum) and boxes. α and the image and k-vector
counts follow from ``ewald.accuracy`` and ``ewald.real_cutoff``; the counts are static
(one compiled program per model), and the host-side check refuses a box they do not cover.

Energy stays one pure function of positions (forces are -∂E/∂R through the linear solve);
Φ is dense [n, n]: fine for clusters and boxes of a few hundred atoms.

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import jax
    >>> from qdyn.models import bpnn
    >>> from qdyn.structures import water
    >>> model = bpnn.build(species=(1, 8), hidden=[8], electrostatics={"scheme": "qeq"})
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> R, system = water()
    >>> q = model.charges(params, R, system)
    >>> abs(float(q.sum())) < 1e-12
    True
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfc
from pydantic import BaseModel, ConfigDict, Field

from ..elements import make_species_table
from ..nn import species_mlp
from ..units import COULOMB_EV_A
from ..validation import QdynInputError
from .base import CLASSICAL, EnergyModel

__all__ = ["EwaldSettings", "ElectrostaticsSettings", "coulomb_matrix", "ewald_parameters", "neutral_charges",
           "qeq_charges", "with_electrostatics", "dipole_moment"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EwaldSettings(_Strict):
    """How periodic boxes are summed (ignored for molecules)."""

    accuracy: float = Field(1e-7, gt=0, lt=1, description="relative size of the neglected real- and reciprocal-"
                                                         "space terms (sets α and the k-vector cutoff)")
    real_cutoff: float = Field(8.0, gt=0, description="real-space cutoff of the erfc(αr)/r sum, Å")
    images: int = Field(1, ge=1, le=3, description="periodic images per direction in the real-space sum "
                                                   "(must reach real_cutoff; the check says when a box needs more)")
    k_max: int = Field(8, ge=1, le=16, description="reciprocal vectors per direction (±k_max; the check says when "
                                                   "a box needs more)")


class ElectrostaticsSettings(_Strict):
    """Learned charges and their Coulomb (molecules) or Ewald (periodic) energy."""

    scheme: Literal["qeq", "neutral"] = Field(
        "qeq", description="qeq: charge equilibration with learned electronegativities and hardness; "
                           "neutral: predicted charges with the total-charge excess spread evenly")
    total_charge: float = Field(0.0, description="total charge of every configuration, e")
    charge_width: float = Field(0.8, gt=0, description="σ of the Gaussian charges, Å: Coulomb damped below ~4σ")
    hidden: list[int] = Field(default_factory=lambda: [8], description="hidden widths of the per-species charge head")
    hardness_init: float = Field(10.0, gt=0, description="qeq: initial hardness J of every species, eV/e²")
    ewald: EwaldSettings = Field(default_factory=EwaldSettings, description="periodic boxes: Ewald summation")


class ElectrostaticsField(_Strict):
    """The ``electrostatics`` setting a family inherits to offer the long-range term."""

    electrostatics: Optional[ElectrostaticsSettings] = Field(
        None, description="long-range term: learned charges + Coulomb/Ewald energy (docs/electrostatics.md); "
                          "null: short-range model only")


# ----------------------------------------------------------------------------- Φ
class EwaldParameters(NamedTuple):
    alpha: float  # Å^-1
    k_cut: float  # Å^-1
    shifts: np.ndarray  # [n_img, 3] integer image offsets (fractional)
    m_half: np.ndarray  # [K, 3] integer reciprocal vectors, one of each ±m pair


def ewald_parameters(ewald: EwaldSettings) -> EwaldParameters:
    """α = sqrt(ln 1/ε)/r_c, k_cut = 2α sqrt(ln 1/ε) (both neglected tails ~ε), and the static
    image and reciprocal-vector grids."""
    log_eps = math.sqrt(-math.log(ewald.accuracy))
    alpha = log_eps / ewald.real_cutoff
    n = ewald.images
    g = np.arange(-n, n + 1)
    shifts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3).astype(float)
    k = np.arange(-ewald.k_max, ewald.k_max + 1)
    m = np.stack(np.meshgrid(k, k, k, indexing="ij"), -1).reshape(-1, 3)
    first = np.array([next((c for c in row if c != 0), 0) for row in m])
    return EwaldParameters(alpha, 2 * alpha * log_eps, shifts, m[first > 0].astype(float))


def _pair_kernel(r, a, alpha):
    """(erfc(αr) - erfc(r/a)) / r, and its r → 0 limit 2/√π (1/a - α), elementwise (Å^-1)."""
    small = r < 1e-9
    rs = jnp.where(small, 1.0, r)
    value = (erfc(alpha * rs) - erfc(rs / a)) / rs
    return jnp.where(small, 2.0 / math.sqrt(math.pi) * (1.0 / a - alpha), value)


def coulomb_matrix(R, mask, box=None, *, width: float, ewald: Optional[EwaldParameters] = None):
    """Φ [n, n] Å^-1 of unit Gaussian charges of width σ = ``width`` at ``R`` [n, 3] Å, so that
    ``½ k_e qᵀΦq`` is their Coulomb energy (self-energies on the diagonal); rows and columns of
    padding atoms (``mask`` False) are 0. Periodic when ``box`` [3, 3] (columns = lattice
    vectors) is given, summed with ``ewald``."""
    a = 2.0 * width  # √2 · sqrt(σ² + σ²)
    d = R[:, None, :] - R[None, :, :]  # [n, n, 3]
    pair = mask[:, None] & mask[None, :]
    if box is None:
        phi = _pair_kernel(_norm(d), a, 0.0)
        return jnp.where(pair, phi, 0.0)
    inv = jnp.linalg.inv(box)
    frac = d @ inv.T
    frac = frac - jnp.round(frac)  # minimum image (round has zero gradient)
    images = (frac[:, :, None, :] + jnp.asarray(ewald.shifts, R.dtype)[None, None]) @ box.T  # [n, n, n_img, 3]
    real = jnp.sum(_pair_kernel(_norm(images), a, ewald.alpha), axis=-1)
    volume = jnp.abs(jnp.linalg.det(box))
    k = 2 * jnp.pi * jnp.asarray(ewald.m_half, R.dtype) @ inv  # [K, 3] Å^-1
    k2 = jnp.sum(k * k, -1)
    weight = 2.0 * (4 * jnp.pi / volume) * jnp.exp(-k2 / (4 * ewald.alpha**2)) / k2  # ±k pairs counted once
    phase = R @ k.T  # [n, K]
    c, s = jnp.cos(phase), jnp.sin(phase)
    recip = (c * weight[None, :]) @ c.T + (s * weight[None, :]) @ s.T
    background = -jnp.pi / (volume * ewald.alpha**2)  # ½ c Q² = -π Q²/(2Vα²) for a charged cell
    return jnp.where(pair, real + recip + background, 0.0)


def _norm(x):
    """|x| over the last axis with a finite gradient at 0 (double where)."""
    r2 = jnp.sum(x * x, -1)
    ok = r2 > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, r2, 1.0)), 0.0)


def check_ewald_box(box, ewald: EwaldSettings) -> None:
    """Refuse a box the static image and k-vector counts do not cover at ``ewald.accuracy``."""
    b = np.asarray(box, dtype=float)
    vol = abs(np.linalg.det(b))
    if vol < 1e-9:
        raise QdynInputError(f"periodic box is singular (volume {vol:.3g} Å³)")
    widths = [vol / np.linalg.norm(np.cross(b[:, (k + 1) % 3], b[:, (k + 2) % 3])) for k in range(3)]
    reach = (ewald.images + 0.5) * min(widths)
    if ewald.real_cutoff > reach:
        need = math.ceil(ewald.real_cutoff / min(widths) - 0.5)
        raise QdynInputError(f"electrostatics.ewald: real_cutoff {ewald.real_cutoff} Å reaches past {ewald.images} "
                             f"image(s) of this box (smallest width {min(widths):.3g} Å): set images: {need}")
    k_cut = ewald_parameters(ewald).k_cut
    need_k = max(math.ceil(k_cut * np.linalg.norm(b[:, i]) / (2 * math.pi)) for i in range(3))
    if need_k > ewald.k_max:
        raise QdynInputError(f"electrostatics.ewald: this box needs k_max ≥ {need_k} for accuracy "
                             f"{ewald.accuracy:g} (k_max is {ewald.k_max}): raise k_max or real_cutoff")


# ----------------------------------------------------------------------------- charges
def neutral_charges(q_raw, mask, total_charge: float = 0.0):
    """Charges [n] e summing exactly to ``total_charge``: the excess of ``q_raw`` spread evenly
    over the real atoms; padding atoms carry 0."""
    q = jnp.where(mask, q_raw, 0.0)
    excess = (jnp.sum(q) - total_charge) / jnp.sum(mask)
    return jnp.where(mask, q - excess, 0.0)


def qeq_charges(chi, hardness, phi, mask, total_charge: float = 0.0):
    """Charges [n] e minimising ``χ·q + ½ Σ J q² + ½ k_e qᵀΦq`` with ``Σq = total_charge``.

    Args:
        chi: [n] electronegativities, eV/e. hardness: [n] J > 0, eV/e². phi: [n, n] Å^-1
            (:func:`coulomb_matrix`). mask: bool [n]; padding atoms get q = 0.
    """
    n = chi.shape[0]
    A = COULOMB_EV_A * phi + jnp.diag(hardness)
    A = jnp.where(mask[:, None] & mask[None, :], A, jnp.eye(n, dtype=A.dtype))  # padding: q_pad = 0
    m = mask.astype(A.dtype)
    top = jnp.concatenate([A, m[:, None]], axis=1)
    bottom = jnp.concatenate([m, jnp.zeros((1,), A.dtype)])[None, :]
    rhs = jnp.concatenate([-jnp.where(mask, chi, 0.0), jnp.asarray([total_charge], A.dtype)])
    sol = jnp.linalg.solve(jnp.concatenate([top, bottom], axis=0), rhs)
    return jnp.where(mask, sol[:n], 0.0)


def dipole_moment(q, R, mask):
    """Σ q_i R_i [3] e·Å (origin-independent for a neutral configuration)."""
    return jnp.sum(jnp.where(mask[:, None], q[:, None] * R, 0.0), axis=0)


# ----------------------------------------------------------------------------- the model
def with_electrostatics(model: EnergyModel, settings: Optional[ElectrostaticsSettings]) -> EnergyModel:
    """``model`` plus the long-range term of ``settings`` (``model`` itself when None).

    The charge head reads the standardised descriptor the short-range model has just computed
    for its own energies (``model.atom_terms``): one descriptor evaluation per energy call, on
    the neighbour list when one is given (periodic boxes). Its parameters live under
    ``params["elec"]`` (group classical).
    The returned model has ``charges(params, R, system) -> q [n]`` e, exactly summing to
    ``total_charge``, and per-atom energies that sum to the total.

    Raises:
        QdynInputError: a model without a per-atom descriptor (template circuits, multistate).
    """
    if settings is None:
        return model
    if model.atom_terms is None or model.is_multistate:
        raise QdynInputError(f"electrostatics needs a single-state model with per-atom descriptors; "
                             f"{model.name} has none (use family bpnn or hybrid)")
    species = model.species
    table = make_species_table(species)
    head = species_mlp(species, tuple(settings.hidden), out=1)
    ewald = ewald_parameters(settings.ewald)
    qeq = settings.scheme == "qeq"

    def init(key):
        k_short, k_head = jax.random.split(key)
        p = model.init(k_short)
        dtype = jnp.result_type(float)
        n_feat = p["g_mean"].shape[0]
        elec = {"head": jax.tree_util.tree_map(lambda w: 0.1 * w, head.init(k_head, n_feat, dtype))}
        if qeq:  # softplus(raw) = hardness_init
            elec["hardness_raw"] = jnp.full((len(species),), math.log(math.expm1(settings.hardness_init)), dtype)
        return {**p, "elec": elec}

    def _terms(params, R, system, neighbor):
        """(charges [n] e, short-range + electrostatic per-atom energies [n] eV, G [n, F])."""
        R = jnp.asarray(R)
        mask = system.mask
        e_short, G = model.atom_terms(params, R, system, neighbor)
        idx = table[system.species]
        out = head.apply(params["elec"]["head"], G, idx, R.dtype)
        phi = coulomb_matrix(R, mask, system.box, width=settings.charge_width, ewald=ewald)
        if qeq:
            J = jax.nn.softplus(params["elec"]["hardness_raw"])[jnp.maximum(idx, 0)]
            q = qeq_charges(out, J, phi, mask, settings.total_charge)
            e = out * q + 0.5 * J * q**2 + 0.5 * COULOMB_EV_A * q * (phi @ q)
        else:
            q = neutral_charges(out, mask, settings.total_charge)
            e = 0.5 * COULOMB_EV_A * q * (phi @ q)
        return q, e_short + jnp.where(mask, e, 0.0), G

    def charges(params, R, system, neighbor=None):
        return _terms(params, R, system, neighbor)[0]  # under jit the unused short-range readout is dropped

    def atom_terms(params, R, system, neighbor=None):
        return _terms(params, R, system, neighbor)[1:]

    def atom_energies(params, R, system, neighbor=None):
        return _terms(params, R, system, neighbor)[1]

    def apply(params, R, system, neighbor=None):
        return jnp.sum(atom_energies(params, R, system, neighbor))

    def check(R, system):
        model.check(R, system)
        if system.box is not None:
            check_ewald_box(system.box, settings.ewald)

    return model._replace(init=init, apply=apply, check=check, atom_energies=atom_energies, charges=charges,
                          atom_terms=atom_terms,
                          name=f"{model.name}+{settings.scheme}", groups={**model.groups, "elec": CLASSICAL})
