"""Configuration samplers: where reference data is taken.

* :func:`thermal_normal_modes` — harmonic sampling around a minimum from its Hessian at a
  temperature (or a range of temperatures), classical or Wigner. Soft intermolecular modes
  are handled as **rigid-body** moves: a linear Cartesian step along a libration mode bends
  and stretches bonds once the amplitude is large, so for systems of several molecules the
  intermolecular modes are expressed in each molecule's rotations and translations and
  applied as finite rotations (bond lengths are kept), while intramolecular vibrations are
  sampled linearly.
* :func:`scan` — a bond-length scan.
* :func:`cluster_configurations` — dimers and clusters: molecules placed at a distance
  range, with random or template (e.g. hydrogen-bonded) orientations and clash rejection.
* :class:`MDSampler` — the protocol an MD-based sampler implements (qdyn's MD plugs in here).
* :func:`optimize_geometry` and :func:`finite_difference_hessian` prepare the minimum and
  Hessian for any labeller.

Every sampler takes an explicit ``seed`` and returns positions float64 [n, n_atoms, 3] Å;
the same seed gives bit-identical configurations.
"""

from __future__ import annotations

import math
from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from .. import elements, units
from ..validation import QdynInputError

__all__ = [
    "random_rotation",
    "fragments",
    "vibrational_analysis",
    "thermal_normal_modes",
    "scan",
    "cluster_configurations",
    "MDSampler",
    "run_md_sampler",
    "optimize_geometry",
    "finite_difference_hessian",
    "COVALENT_RADII",
    "triatomic",
    "torsion_scan",
]

# Covalent radii [Å] (Cordero et al., Dalton Trans. 2008; ase.data via qdyn.elements), used to
# find molecules and clashes.
COVALENT_RADII = {z: elements.covalent_radius(z) for z in range(1, elements._LAST_COVALENT_RADIUS + 1)}

# Natural time unit of (eV, Å, amu) in seconds: sqrt(eigenvalue of the mass-weighted
# Hessian) is an angular frequency in 1/this.
_TIME_UNIT_S = units.TIME_UNIT_FS * 1e-15
_HBAR_NATURAL = units.HBAR_EV_S / _TIME_UNIT_S  # ħ in eV · (natural time unit)


def _radius(z: int) -> float:
    try:
        return elements.covalent_radius(int(z))
    except elements.UnknownElementError as exc:
        raise QdynInputError(str(exc)) from None


def wavenumber_to_omega(cm1):
    """Wavenumber [cm^-1] → angular frequency in qdyn's natural time unit."""
    return np.asarray(cm1) * 2 * np.pi * units.SPEED_OF_LIGHT_CM_S * _TIME_UNIT_S


def omega_to_wavenumber(omega):
    """Angular frequency in qdyn's natural time unit → wavenumber [cm^-1]."""
    return np.asarray(omega) / (2 * np.pi * units.SPEED_OF_LIGHT_CM_S * _TIME_UNIT_S)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A Haar-uniform proper rotation matrix [3, 3] (det +1)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return _quat_to_matrix(q)


def _quat_to_matrix(q):
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _rotvec_to_matrix(theta) -> np.ndarray:
    """Rodrigues: rotation by |θ| about θ/|θ| (θ [3] in radians)."""
    angle = float(np.linalg.norm(theta))
    if angle < 1e-15:
        return np.eye(3)
    k = np.asarray(theta) / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def _masses(Z) -> np.ndarray:
    return np.array([elements.mass(int(z)) for z in Z])


def _com(R, m):
    return (m[:, None] * R).sum(0) / m.sum()


def fragments(Z, R, *, scale: float = 1.2) -> list[np.ndarray]:
    """Molecules of a configuration: connected components of the covalent-bond graph.

    Two atoms are bonded when closer than ``scale`` × the sum of their covalent radii.

    Returns:
        A list of int index arrays, one per molecule, ordered by their first atom.
    """
    Z = np.asarray(Z)
    R = np.asarray(R, dtype=float)
    n = len(Z)
    rc = np.array([_radius(z) for z in Z])
    d = np.linalg.norm(R[:, None] - R[None], axis=-1)
    bonded = d < scale * (rc[:, None] + rc[None])
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(bonded, 1))):
        parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted((np.array(g) for g in groups.values()), key=lambda g: g[0])


def _rigid_vectors(R, m, frag) -> np.ndarray:
    """Mass-weighted Cartesian vectors [6, 3N] of one fragment's translations and rotations."""
    n = len(R)
    sq = np.sqrt(m)
    com = _com(R[frag], m[frag])
    vecs = []
    for a in range(3):
        v = np.zeros((n, 3))
        v[frag, a] = 1.0
        vecs.append((v * sq[:, None]).ravel())
    for a in range(3):
        e = np.zeros(3)
        e[a] = 1.0
        v = np.zeros((n, 3))
        v[frag] = np.cross(e, R[frag] - com)
        vecs.append((v * sq[:, None]).ravel())
    return np.array(vecs)


def _orthonormal(vectors, tol=1e-8) -> np.ndarray:
    """Orthonormal basis [3N, k] of the span of row vectors (drops dependent ones)."""
    if len(vectors) == 0:
        return np.zeros((0, 0))
    u, s, _ = np.linalg.svd(np.asarray(vectors).T, full_matrices=False)
    return u[:, s > tol * max(s.max(), 1.0)]


class VibrationalAnalysis:
    """Normal modes split into intramolecular vibrations and intermolecular rigid-body modes.

    Attributes:
        omega_intra: float64 [k] angular frequencies (natural units; NaN never — imaginary
            modes are stored as negative values) of intramolecular modes.
        modes_intra: float64 [3N, k] orthonormal mass-weighted eigenvectors.
        omega_inter: float64 [j] frequencies of intermolecular (rigid-body) modes.
        modes_inter: float64 [3N, j] mass-weighted eigenvectors inside the rigid-body space.
        fragments: the molecules (index arrays).
        masses: float64 [N] amu.
    """

    def __init__(self, omega_intra, modes_intra, omega_inter, modes_inter, frags, masses):
        self.omega_intra = omega_intra
        self.modes_intra = modes_intra
        self.omega_inter = omega_inter
        self.modes_inter = modes_inter
        self.fragments = frags
        self.masses = masses

    @property
    def wavenumbers_intra(self):
        """Intramolecular wavenumbers [cm^-1] (negative: imaginary)."""
        return omega_to_wavenumber(self.omega_intra)

    @property
    def wavenumbers_inter(self):
        """Intermolecular wavenumbers [cm^-1] (negative: imaginary)."""
        return omega_to_wavenumber(self.omega_inter)


def vibrational_analysis(Z, R, hessian, *, frags: Optional[Sequence[np.ndarray]] = None) -> VibrationalAnalysis:
    """Normal modes of a minimum, with intermolecular modes kept in rigid-body coordinates.

    Args:
        Z: int [N] atomic numbers.
        R: float64 [N, 3] Å, a minimum of the energy.
        hessian: float64 [3N, 3N] eV/Å², second derivatives in the order (atom, xyz).
        frags: molecules as index arrays; by default found from covalent bonds.
    """
    Z = np.asarray(Z)
    R = np.asarray(R, dtype=float)
    n = len(Z)
    H = np.asarray(hessian, dtype=float)
    if H.shape != (3 * n, 3 * n):
        raise QdynInputError(f"hessian: expected shape {(3 * n, 3 * n)}, got {H.shape}")
    H = 0.5 * (H + H.T)
    m = _masses(Z)
    inv_sq = np.repeat(1.0 / np.sqrt(m), 3)
    Hmw = H * inv_sq[:, None] * inv_sq[None, :]
    frags = list(frags) if frags is not None else fragments(Z, R)
    rigid = _orthonormal(np.concatenate([_rigid_vectors(R, m, f) for f in frags]))
    glob = _orthonormal(_rigid_vectors(R, m, np.arange(n)))
    # Intramolecular space: orthogonal complement of every molecule's rigid motions.
    full = np.linalg.svd(rigid, full_matrices=True)[0]
    comp = full[:, rigid.shape[1]:]
    w, U = np.linalg.eigh(comp.T @ Hmw @ comp)
    omega_intra = np.sign(w) * np.sqrt(np.abs(w))
    modes_intra = _fix_signs(comp @ U)
    # Intermolecular space: rigid motions minus the global translation/rotation.
    inter = rigid - glob @ (glob.T @ rigid)
    inter = _orthonormal(inter.T) if inter.size else inter
    if inter.shape[1]:
        w2, U2 = np.linalg.eigh(inter.T @ Hmw @ inter)
        omega_inter = np.sign(w2) * np.sqrt(np.abs(w2))
        modes_inter = _fix_signs(inter @ U2)
    else:
        omega_inter, modes_inter = np.zeros(0), np.zeros((3 * n, 0))
    return VibrationalAnalysis(omega_intra, modes_intra, omega_inter, modes_inter, frags, m)


def _fix_signs(U):
    """Eigenvector signs are arbitrary; fix them (largest component positive) so that a
    Hessian that differs in the last digits samples (almost) the same configurations."""
    idx = np.argmax(np.abs(U), axis=0)
    return U * np.sign(U[idx, np.arange(U.shape[1])])


def mode_std(omega, kT, distribution, omega_floor):
    """Standard deviation of mass-weighted normal coordinates [Å sqrt(amu)]."""
    w = np.maximum(np.abs(omega), omega_floor)
    if distribution == "classical":
        return np.sqrt(kT) / w
    if distribution == "wigner":
        # Harmonic Wigner distribution at temperature T: <q²> = ħ/(2ω) coth(ħω / 2kT).
        x = _HBAR_NATURAL * w / (2 * kT)
        return np.sqrt(_HBAR_NATURAL / (2 * w) / np.tanh(x))
    raise ValueError(f"distribution must be 'classical' or 'wigner', got {distribution!r}")


def thermal_normal_modes(
    Z,
    R0,
    hessian,
    *,
    n: int,
    temperatures: tuple[float, float] | float,
    seed: int,
    distribution: str = "classical",
    random_orientation: bool = True,
    min_wavenumber: float = 50.0,
    frags: Optional[Sequence[np.ndarray]] = None,
    clash_scale: float = 1.5,
    max_tries: int = 1000,
) -> np.ndarray:
    """Thermal normal-mode sampling around a minimum.

    Each configuration draws a temperature T uniformly from ``temperatures`` (or uses the
    single value), then every intramolecular mode k a normal coordinate
    q_k ~ N(0, kT/ω_k²) (``"classical"``, the Boltzmann distribution of the harmonic
    potential) or N(0, ħ/(2ω_k) coth(ħω_k/2kT)) (``"wigner"``, including zero-point motion).
    Intermolecular modes of multi-molecule systems are drawn the same way but applied as
    finite rigid rotations and translations of each molecule about its centre of mass.

    Args:
        Z: int [N] atomic numbers.
        R0: float64 [N, 3] Å, the minimum.
        hessian: float64 [3N, 3N] eV/Å² at ``R0``.
        n: number of configurations.
        temperatures: T [K] or a (T_min, T_max) range.
        seed: PRNG seed.
        distribution: ``"classical"`` or ``"wigner"``.
        random_orientation: rotate each configuration by a Haar-random rotation about its
            centre of mass (which is put at the origin).
        min_wavenumber: frequencies below this [cm^-1] (and imaginary ones) are raised to
            it, bounding the amplitude of very soft modes.
        frags: molecules as index arrays; default from covalent bonds.
        clash_scale: for several molecules, a draw that puts atoms of different molecules
            closer than this × the sum of their covalent radii is rejected and redrawn (the
            harmonic model of soft, anharmonic intermolecular modes has unphysical tails).
        max_tries: give up (with an error) after this many rejected draws in a row.

    Returns:
        float64 [n, N, 3] positions in Å.

    Example:
        >>> from qdyn import structures
        >>> R0, _ = structures.lih()
        >>> H = np.zeros((6, 6)); k = 6.0  # eV/Å² along the bond
        >>> H[2, 2] = H[5, 5] = k; H[2, 5] = H[5, 2] = -k
        >>> thermal_normal_modes([3, 1], R0, H, n=4, temperatures=300.0, seed=0).shape
        (4, 2, 3)
    """
    Z = np.asarray(Z)
    R0 = np.asarray(R0, dtype=float)
    va = vibrational_analysis(Z, R0, hessian, frags=frags)
    rng = np.random.default_rng(seed)
    lo, hi = (temperatures, temperatures) if np.isscalar(temperatures) else temperatures
    if not 0 < lo <= hi:
        raise ValueError(f"temperatures must be positive with T_min <= T_max, got {temperatures}")
    floor = float(wavenumber_to_omega(min_wavenumber))
    inv_sq = np.repeat(1.0 / np.sqrt(va.masses), 3)
    multi = len(va.fragments) > 1
    if multi:
        owner = np.empty(len(Z), int)
        for k, f in enumerate(va.fragments):
            owner[f] = k
        rc = np.array([_radius(z) for z in Z])
        limit = clash_scale * (rc[:, None] + rc[None])
        other = owner[:, None] != owner[None]
    out = np.empty((n,) + R0.shape)
    for i in range(n):
        for _ in range(max_tries):
            T = rng.uniform(lo, hi)
            kT = units.temperature_to_energy(T)
            q = rng.normal(size=len(va.omega_intra)) * mode_std(va.omega_intra, kT, distribution, floor)
            R = R0 + (va.modes_intra @ q * inv_sq).reshape(R0.shape)
            if va.modes_inter.shape[1]:
                qi = rng.normal(size=len(va.omega_inter)) * mode_std(va.omega_inter, kT, distribution, floor)
                R = _apply_rigid(R, R0, (va.modes_inter @ qi * inv_sq).reshape(R0.shape), va.fragments, va.masses)
            if not multi:
                break
            d = np.linalg.norm(R[:, None] - R[None], axis=-1)
            if not np.any(other & (d < limit)):
                break
        else:
            raise RuntimeError(f"thermal_normal_modes: {max_tries} draws in a row clashed for configuration {i}; "
                               f"lower the temperature or clash_scale ({clash_scale})")
        out[i] = _orient(R, va.masses, rng) if random_orientation else R
    return out


def _apply_rigid(R, R0, dx, frags, m):
    """Turn a linear rigid-body displacement dx [N, 3] into finite moves of each molecule."""
    R = R.copy()
    for f in frags:
        c0 = _com(R0[f], m[f])
        # Least squares for (translation t, rotation vector θ): dx_i = t + θ × (r_i − c).
        rel = R0[f] - c0
        A = np.zeros((3 * len(f), 6))
        for k, r in enumerate(rel):
            A[3 * k: 3 * k + 3, :3] = np.eye(3)
            A[3 * k: 3 * k + 3, 3:] = -np.array([[0, -r[2], r[1]], [r[2], 0, -r[0]], [-r[1], r[0], 0]])
        sol = np.linalg.lstsq(A, dx[f].ravel(), rcond=None)[0]
        t, theta = sol[:3], sol[3:]
        c = _com(R[f], m[f])
        R[f] = (R[f] - c) @ _rotvec_to_matrix(theta).T + c + t
    return R


def _orient(R, m, rng):
    c = _com(R, m)
    return (R - c) @ random_rotation(rng).T


def scan(R0, *, atoms: tuple[int, int], values: Sequence[float], move: Sequence[int] | None = None) -> np.ndarray:
    """Bond-length scan: set the distance between ``atoms`` to each of ``values`` [Å].

    Args:
        R0: float64 [N, 3] Å starting geometry.
        atoms: (i, j); the atoms in ``move`` (default: just j) are translated along the
            i→j direction so that |R_j − R_i| takes each value.
        values: distances [Å].
        move: indices of the atoms that move with j (e.g. the rest of j's molecule).

    Returns:
        float64 [len(values), N, 3] Å.

    Example:
        >>> from qdyn import structures
        >>> R0, _ = structures.lih()
        >>> scan(R0, atoms=(0, 1), values=[1.2, 2.0])[:, 1, 2]
        array([1.2, 2. ])
    """
    R0 = np.asarray(R0, dtype=float)
    i, j = atoms
    move = [j] if move is None else list(move)
    d0 = R0[j] - R0[i]
    u = d0 / np.linalg.norm(d0)
    out = np.repeat(R0[None], len(values), axis=0)
    for k, v in enumerate(values):
        out[k, move] += (v - np.linalg.norm(d0)) * u
    return out


def torsion_scan(R0, *, axis: tuple[int, int], move: Sequence[int], angles_deg: Sequence[float]) -> np.ndarray:
    """Rigid torsion scan: rotate the atoms in ``move`` about the bond ``axis`` (i → j).

    Args:
        R0: float64 [N, 3] Å starting geometry.
        axis: (i, j), the bond rotated about; the rotation is right-handed about i → j.
        move: the atoms rotated (e.g. a methyl group's hydrogens); bonds and angles inside
            the moving group and to the axis are kept.
        angles_deg: rotation angles [°] relative to ``R0``.

    Returns:
        float64 [len(angles_deg), N, 3] Å.

    Example:
        >>> R0 = np.array([[0.0, 0, 0], [1.5, 0, 0], [2.0, 1.0, 0]])
        >>> np.round(torsion_scan(R0, axis=(0, 1), move=[2], angles_deg=[90.0])[0, 2], 6)
        array([2., 0., 1.])
    """
    R0 = np.asarray(R0, dtype=float)
    i, j = axis
    u = (R0[j] - R0[i]) / np.linalg.norm(R0[j] - R0[i])
    move = list(move)
    out = np.repeat(R0[None], len(angles_deg), axis=0)
    for k, a in enumerate(angles_deg):
        rot = _rotvec_to_matrix(np.deg2rad(a) * u)
        out[k, move] = (R0[move] - R0[j]) @ rot.T + R0[j]
    return out


def _kabsch(P, Q, m):
    """Rotation U with (P − com) U ≈ (Q − com) (mass-weighted, proper)."""
    p = P - _com(P, m)
    q = Q - _com(Q, m)
    u, _, vt = np.linalg.svd((p * m[:, None]).T @ q)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1, 1, d]) @ vt


def cluster_configurations(
    monomers: Sequence[tuple[Sequence[int], np.ndarray]],
    *,
    n: int,
    distance_range: tuple[float, float],
    seed: int,
    orientation: str = "random",
    template: Optional[np.ndarray] = None,
    rotation_std_deg: float = 15.0,
    reference_atoms: Optional[Sequence[int]] = None,
    clash_scale: float = 1.5,
    max_tries: int = 10000,
) -> np.ndarray:
    """Dimers and clusters: molecules placed at a distance, with random or template orientations.

    Each configuration draws, for every molecule, one geometry from its pool and, for every
    molecule after the first, a distance d uniform in ``distance_range`` between its
    reference atom and the first molecule's reference atom. Configurations in which any two
    atoms of different molecules are closer than ``clash_scale`` × the sum of their covalent
    radii are rejected and redrawn.

    Args:
        monomers: per molecule, (Z int [A_m], pool float64 [k_m, A_m, 3] or [A_m, 3] Å).
        n: number of configurations.
        distance_range: (d_min, d_max) Å between reference atoms.
        seed: PRNG seed.
        orientation: ``"random"`` (Haar-random rotation of every molecule, random direction
            of the separation) or ``"template"`` (start from ``template``, e.g. a
            hydrogen-bonded minimum, rescale each molecule's separation from the first along
            the template's reference-atom axis, and rotate molecules by a random angle with
            standard deviation ``rotation_std_deg`` about their centres of mass).
        template: float64 [N, 3] Å cluster geometry for ``"template"`` (atoms in monomer
            order).
        rotation_std_deg: angle spread [deg] for ``"template"``.
        reference_atoms: per molecule, the index (within the molecule) of the atom the
            distance is measured from; default each molecule's centre of mass.
        clash_scale: clash threshold factor (see above).
        max_tries: give up (with an error) after this many rejected draws in a row.

    Returns:
        float64 [n, N, 3] Å, N the total atom count, molecules in the given order.
    """
    if orientation not in ("random", "template"):
        raise ValueError(f"orientation must be 'random' or 'template', got {orientation!r}")
    if orientation == "template" and template is None:
        raise ValueError("orientation='template' needs template=")
    Zs = [np.asarray(z) for z, _ in monomers]
    pools = [np.asarray(p, dtype=float) for _, p in monomers]
    pools = [p[None] if p.ndim == 2 else p for p in pools]
    for k, (z, p) in enumerate(zip(Zs, pools)):
        if p.shape[1:] != (len(z), 3):
            raise QdynInputError(f"monomers[{k}]: pool shape {p.shape} does not match {len(z)} atoms")
    ms = [_masses(z) for z in Zs]
    sizes = [len(z) for z in Zs]
    offsets = np.cumsum([0] + sizes)
    Zall = np.concatenate(Zs)
    rc = np.array([_radius(z) for z in Zall])
    owner = np.repeat(np.arange(len(Zs)), sizes)
    limit = clash_scale * (rc[:, None] + rc[None])
    other = owner[:, None] != owner[None]
    lo, hi = distance_range
    rng = np.random.default_rng(seed)

    def ref_point(k, R):
        if reference_atoms is None:
            return _com(R, ms[k])
        return R[reference_atoms[k]]

    if template is not None:
        template = np.asarray(template, dtype=float)
        tparts = [template[offsets[k]: offsets[k + 1]] for k in range(len(Zs))]

    out = np.empty((n, offsets[-1], 3))
    for i in range(n):
        for _ in range(max_tries):
            parts = []
            for k in range(len(Zs)):
                geom = pools[k][rng.integers(len(pools[k]))]
                geom = geom - _com(geom, ms[k])
                if orientation == "random":
                    geom = geom @ random_rotation(rng).T
                    if k == 0:
                        parts.append(geom)
                        continue
                    d = rng.uniform(lo, hi)
                    direction = rng.normal(size=3)
                    direction /= np.linalg.norm(direction)
                    geom = geom + ref_point(0, parts[0]) + d * direction - ref_point(k, geom)
                else:
                    tp = tparts[k]
                    # The pool geometry is aligned onto the template molecule, then tilted.
                    geom = geom @ _kabsch(geom, tp, ms[k])
                    axis = rng.normal(size=3)
                    axis /= np.linalg.norm(axis)
                    angle = np.deg2rad(rotation_std_deg) * rng.normal()
                    geom = geom @ _rotvec_to_matrix(angle * axis).T + _com(tp, ms[k])
                    if k > 0:
                        sep = ref_point(k, tp) - ref_point(0, tparts[0])
                        u = sep / np.linalg.norm(sep)
                        d = rng.uniform(lo, hi)
                        geom = geom + ref_point(0, parts[0]) + d * u - ref_point(k, geom)
                parts.append(geom)
            R = np.concatenate(parts)
            dist = np.linalg.norm(R[:, None] - R[None], axis=-1)
            if not np.any(other & (dist < limit)):
                out[i] = R
                break
        else:
            raise RuntimeError(
                f"cluster_configurations: {max_tries} draws in a row clashed for configuration {i}; "
                f"increase distance_range (now {distance_range}) or lower clash_scale ({clash_scale})"
            )
    return out


@runtime_checkable
class MDSampler(Protocol):
    """An MD-based sampler: ``sampler(Z, R0, n=..., seed=...) -> R [n, N, 3] Å``.

    qdyn's molecular dynamics (or any other engine) implements this to draw configurations
    from a trajectory; :func:`run_md_sampler` calls it and checks what comes back.
    """

    def __call__(self, Z: np.ndarray, R0: np.ndarray, *, n: int, seed: int) -> np.ndarray: ...


def run_md_sampler(sampler: MDSampler, Z, R0, *, n: int, seed: int) -> np.ndarray:
    """Call an :class:`MDSampler` and validate its output (shape [n, N, 3], finite)."""
    from ..validation import check_positions

    R = np.asarray(sampler(np.asarray(Z), np.asarray(R0, dtype=float), n=n, seed=seed), dtype=float)
    if R.shape != (n,) + np.shape(R0):
        raise QdynInputError(f"MD sampler returned shape {R.shape}, expected {(n,) + np.shape(R0)}")
    check_positions(R, batched=True, where="MD sampler output")
    return R


def optimize_geometry(labeler, Z, R0, *, fmax: float = 1e-3, max_steps: int = 200) -> np.ndarray:
    """Minimise a labeller's energy (BFGS on analytic forces) until max |F| < ``fmax`` eV/Å.

    Args:
        labeler: a :class:`qdyn.data.labelers.Labeler`.
        Z: int [N]; R0: float64 [N, 3] Å starting geometry.
        fmax: force convergence threshold [eV/Å].
        max_steps: iteration limit; exceeding it raises.

    Returns:
        float64 [N, 3] Å.
    """
    from scipy.optimize import minimize

    Z = np.asarray(Z)
    R0 = np.asarray(R0, dtype=float)
    last = {}

    def fun(x):
        res = labeler.label(Z, x.reshape(R0.shape))
        if not np.isfinite(res.energy):
            raise RuntimeError(f"optimize_geometry: labelling failed ({res.status})")
        last["f"] = res.forces
        return res.energy, -res.forces.ravel()

    opt = minimize(fun, R0.ravel(), jac=True, method="BFGS", options={"gtol": fmax, "norm": np.inf, "maxiter": max_steps})
    R = opt.x.reshape(R0.shape)
    fm = float(np.abs(labeler.label(Z, R).forces).max())
    if fm > fmax * 1.5:
        raise RuntimeError(f"optimize_geometry: max |F| = {fm:.2e} eV/Å after {opt.nit} steps ({opt.message})")
    return R


def finite_difference_hessian(labeler, Z, R, *, step: float = 5e-3) -> np.ndarray:
    """Hessian [3N, 3N] eV/Å² by central differences of analytic forces (step in Å)."""
    Z = np.asarray(Z)
    R = np.asarray(R, dtype=float)
    n3 = R.size
    H = np.empty((n3, n3))
    for k in range(n3):
        d = np.zeros(n3)
        d[k] = step
        fp = labeler.label(Z, R + d.reshape(R.shape)).forces.ravel()
        fm = labeler.label(Z, R - d.reshape(R.shape)).forces.ravel()
        H[k] = -(fp - fm) / (2 * step)
    return 0.5 * (H + H.T)


def triatomic(
    *,
    n: int,
    r1,
    r2,
    angle_deg,
    mode: str = "random",
    seed: int = 0,
    random_orientation: bool = False,
    keep_first: Optional[int] = None,
) -> np.ndarray:
    """Geometries of a triatomic A–B, A–C (central atom first) from internal coordinates.

    Each coordinate is a number (held fixed), an interval ``[lo, hi]`` (``mode="scan"``:
    ``n`` evenly spaced values, all intervals traversed together; ``mode="random"``: uniform
    draws), or, for ``r2`` only, the string ``"r1"`` (symmetric: r2 = r1).

    Args:
        n: number of geometries.
        r1: bond A–B [Å].
        r2: bond A–C [Å] or ``"r1"``.
        angle_deg: angle B–A–C [degrees].
        mode: ``"scan"`` or ``"random"``.
        seed: random seed (``mode="random"`` and ``random_orientation``).
        random_orientation: rotate each geometry by a Haar-random rotation.
        keep_first: return only the first this many of the ``n`` geometries (a recipe can
            shrink a random set and keep every geometry, and so every cached label, it had).

    Returns:
        float64 [n or keep_first, 3, 3] Å: A at the origin, B on +x, C in the xy plane (before rotation).

    Example:
        >>> R = triatomic(n=3, r1=2.05, r2="r1", angle_deg=[100.0, 180.0], mode="scan")
        >>> np.round(np.linalg.norm(R[:, 2] - R[:, 0], axis=1), 3)
        array([2.05, 2.05, 2.05])
    """
    if mode not in ("scan", "random"):
        raise QdynInputError(f"triatomic sampler: mode must be 'scan' or 'random', got {mode!r}")
    rng = np.random.default_rng(seed)

    def values(spec):
        if np.ndim(spec) == 0:
            return np.full(n, float(spec))
        lo, hi = (float(x) for x in spec)
        if mode == "scan":
            return np.linspace(lo, hi, n)
        return rng.uniform(lo, hi, n)

    a = values(r1)
    b = a.copy() if isinstance(r2, str) and r2 == "r1" else values(r2)
    t = np.deg2rad(values(angle_deg))
    if np.any(a <= 0) or np.any(b <= 0):
        raise QdynInputError("triatomic sampler: bond lengths must be positive")
    R = np.zeros((n, 3, 3))
    R[:, 1, 0] = a
    R[:, 2, 0] = b * np.cos(t)
    R[:, 2, 1] = b * np.sin(t)
    if random_orientation:
        for k in range(n):
            R[k] = R[k] @ random_rotation(rng).T
    return R if keep_first is None else R[: int(keep_first)]
