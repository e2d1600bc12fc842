"""Configurations of water clusters (H2O)n and periodic liquid-water boxes, for labelling.

Two samplers used by the ``water_clusters`` and ``water_box`` recipes
(:mod:`qdyn.data.recipes`):

* :func:`cluster_md_frames` — (H2O)n: molecules placed on a jittered cubic grid at liquid
  density (the n grid points nearest the centre, so the cluster is compact), random
  orientations, no clashes; relaxed with BFGS on the labeller's own potential; then Langevin
  MD on that potential, one frame every ``interval`` steps after an equilibration. The
  frames are thermal configurations of the labelling method itself (GFN2-xTB here), so the
  training data cover what an MD run with a model of that method visits.
* :func:`liquid_box_frames` — a periodic box of flexible TIP3P-like water (ASE's TIP3P
  intermolecular terms plus SPC/Fw's harmonic O–H stretch and H–O–H bend) equilibrated by
  Langevin MD at liquid density: cheap (pure NumPy, ≈ 10 ms per step for 32 waters) and
  gives liquid-like hydrogen-bond networks with thermal intramolecular distortions, which a
  few ps of periodic xTB MD (≈ 5 s per step for 32 waters) could not afford here. (ASE's
  rigid-water route through ``FixBondLengths`` took ≈ 0.7 s per step here.) Each frame
  may get extra Gaussian displacements of every atom to widen the sampled region.

Everything is NumPy/ASE on the host; lengths Å, times fs, temperatures K, masses amu.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .. import units
from ..structures import water

__all__ = ["MONOMER_R", "box_length", "water_cluster_geometry", "water_box_geometry", "cluster_md_frames",
           "liquid_box_frames", "sample_water_recipe"]

# A water monomer (O, H, H) in Å: TIP3P's rigid geometry (0.9572 Å, 104.52°), O at the origin.
_A = np.deg2rad(104.52)
MONOMER_R = water()[0]
_WATER_MASS_AMU = 15.999 + 2 * 1.008


def box_length(n_molecules: int, density_g_cm3: float) -> float:
    """Edge [Å] of the cubic box holding ``n_molecules`` waters at the given density [g/cm³]."""
    if n_molecules < 1 or density_g_cm3 <= 0:
        raise ValueError(f"box_length: need n_molecules >= 1 and density > 0, got {n_molecules}, {density_g_cm3}")
    volume = n_molecules * _WATER_MASS_AMU * units.AMU_PER_A3_G_CM3 / density_g_cm3  # Å³
    return float(volume ** (1.0 / 3.0))


def _random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _place(points: np.ndarray, rng, *, jitter: float, min_dist: float, cell: Optional[float], tries: int = 500):
    """Monomers at ``points`` (O positions, jittered, randomly oriented) without clashes.

    Molecules are inserted one at a time; each is redrawn (position jitter and orientation)
    until no atom is closer than ``min_dist`` Å to an atom of a molecule already placed.
    """
    placed = np.zeros((0, 3))
    for p in points:
        for _ in range(tries):
            mol = p + rng.uniform(-jitter, jitter, 3) + (MONOMER_R - MONOMER_R.mean(0)) @ _random_rotation(rng).T
            d = mol[:, None] - placed[None]
            if cell is not None:
                d -= cell * np.round(d / cell)
            if not len(placed) or np.linalg.norm(d, axis=-1).min() >= min_dist:
                placed = np.concatenate([placed, mol])
                break
        else:
            raise RuntimeError(f"could not place water {len(placed) // 3 + 1} of {len(points)} without clashes "
                               f"(min distance {min_dist} Å) in {tries} tries")
    return placed


def water_cluster_geometry(n: int, *, seed: int, density_g_cm3: float = 0.997, jitter: float = 0.25,
                           min_dist: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """A compact (H2O)n starting geometry: ``(Z int [3n], R [3n, 3] Å)``, atoms ordered O H H.

    Molecules sit on the n points of a cubic grid (spacing from the liquid density) nearest
    the grid's centre, each moved by up to ``jitter`` Å and randomly oriented; a placement
    with any intermolecular atom pair closer than ``min_dist`` Å is redrawn.
    """
    if n < 1:
        raise ValueError(f"water_cluster_geometry: n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    a = box_length(1, density_g_cm3)
    k = int(np.ceil(n ** (1 / 3))) + 2
    grid = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    grid -= grid.mean(0)
    # Tiny random tie-break so equal-distance shells are filled in a seed-dependent order.
    order = np.argsort(np.linalg.norm(grid, axis=1) + 1e-3 * rng.random(len(grid)))
    R = _place(grid[order[:n]], rng, jitter=jitter, min_dist=min_dist, cell=None)
    return np.tile([8, 1, 1], n), R


def _wrap_molecules(R: np.ndarray, L: float) -> np.ndarray:
    """Shift whole molecules (O H H) so each O lies in [0, L)³; molecules stay intact."""
    W = R.reshape(-1, 3, 3)
    return (W - L * np.floor(W[:, :1] / L)).reshape(-1, 3)


def water_box_geometry(n_molecules: int, *, density_g_cm3: float, seed: int,
                       min_dist: float = 1.5) -> tuple[np.ndarray, np.ndarray, float]:
    """Waters on a jittered cubic lattice filling a periodic cube: ``(Z [3n], R [3n, 3] Å, L Å)``.

    Sites are the k³ lattice points (k = ⌈n^⅓⌉); when n fits on the even-parity half of
    them (i + j + l even, an fcc-like sublattice with √2 larger spacing: 32 waters in a 4³
    lattice), molecules go there, so randomly oriented neighbours do not clash.
    """
    rng = np.random.default_rng(seed)
    L = box_length(n_molecules, density_g_cm3)
    k = int(np.ceil(n_molecules ** (1 / 3)))
    sites = (np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * (L / k)
    idx = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3)
    even = np.flatnonzero(idx.sum(1) % 2 == 0)
    pool = even if n_molecules <= len(even) else np.arange(len(sites))
    sites = sites[np.sort(rng.permutation(pool)[:n_molecules])]
    R = _place(sites, rng, jitter=0.1 * L / k, min_dist=min_dist, cell=L)
    return np.tile([8, 1, 1], n_molecules), _wrap_molecules(R, L), L


def cluster_md_frames(
    labeler,
    Z: np.ndarray,
    R0: np.ndarray,
    *,
    n_frames: int,
    temperature: float,
    dt: float,
    friction: float,
    equilibration_steps: int,
    interval: int,
    seed: int,
    opt_fmax: float = 0.05,
    opt_steps: int = 300,
    progress=None,
) -> np.ndarray:
    """Thermal configurations from Langevin MD on the labeller's potential.

    Args:
        labeler: anything with ``label(Z, R) -> FrameResult`` (eV, Å), e.g.
            :class:`qdyn.data.labelers.TBLiteLabeler`.
        Z: int [A] atomic numbers.
        R0: float64 [A, 3] starting positions, Å (relaxed first with BFGS to ``opt_fmax`` eV/Å
            or ``opt_steps`` steps, whichever comes first).
        n_frames: frames returned, one every ``interval`` steps after ``equilibration_steps``.
        temperature: Langevin target [K].
        dt: time step [fs].
        friction: Langevin friction [1/fs].
        seed: seeds the initial velocities and the Langevin noise.
        progress: optional ``progress(step, total_steps)``.

    Returns:
        float64 [n_frames, A, 3] positions, Å.

    Raises:
        RuntimeError: if the potential fails (a labelling error) during relaxation or MD.
    """
    from ase import Atoms
    from ase import units as ase_units
    from ase.calculators.calculator import Calculator, all_changes
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.optimize import BFGS

    class _LabelerCalc(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            res = labeler.label(self.atoms.numbers, self.atoms.positions)
            if not res.converged:
                raise RuntimeError(f"labeller failed during sampling MD: {res.status}")
            self.results = {"energy": res.energy, "forces": res.forces}

    atoms = Atoms(numbers=np.asarray(Z), positions=np.asarray(R0, dtype=float))
    atoms.calc = _LabelerCalc()
    BFGS(atoms, logfile=None).run(fmax=opt_fmax, steps=opt_steps)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    # ASE's time unit is not the fs: convert through ASE's own constant at its boundary.
    md = Langevin(atoms, timestep=dt * ase_units.fs, temperature_K=temperature, friction=friction / ase_units.fs,
                  rng=rng)
    total = equilibration_steps + n_frames * interval
    frames = []
    done = 0
    md.run(equilibration_steps)
    done += equilibration_steps
    for _ in range(n_frames):
        md.run(interval)
        done += interval
        frames.append(atoms.get_positions().copy())
        if progress:
            progress(done, total)
    return np.asarray(frames)


# SPC/Fw intramolecular force constants (Wu, Tepper, Voth, J. Chem. Phys. 124, 024503 (2006)):
# 1059.162 kcal/mol/Å² and 75.90 kcal/mol/rad² (E = k/2 Δ²), about TIP3P's geometry here.
_K_BOND = 1059.162 * units.KCAL_PER_MOL_EV  # eV/Å²
_K_ANGLE = 75.90 * units.KCAL_PER_MOL_EV  # eV/rad²


def _intramolecular(R: np.ndarray) -> tuple[float, np.ndarray]:
    """Harmonic O–H stretch + H–O–H bend for waters ordered O H H: (energy eV, forces [A, 3] eV/Å)."""
    W = R.reshape(-1, 3, 3)
    v1, v2 = W[:, 1] - W[:, 0], W[:, 2] - W[:, 0]
    r1, r2 = np.linalg.norm(v1, axis=1), np.linalg.norm(v2, axis=1)
    u1, u2 = v1 / r1[:, None], v2 / r2[:, None]
    cos = np.clip(np.sum(u1 * u2, 1), -1.0, 1.0)
    th = np.arccos(cos)
    r0, th0 = 0.9572, _A
    e = 0.5 * _K_BOND * np.sum((r1 - r0) ** 2 + (r2 - r0) ** 2) + 0.5 * _K_ANGLE * np.sum((th - th0) ** 2)
    F = np.zeros_like(W)
    fb1 = -_K_BOND * (r1 - r0)[:, None] * u1
    fb2 = -_K_BOND * (r2 - r0)[:, None] * u2
    # dθ/dx_H1 = -(u2 - cos u1) / (r1 sin θ); force = -k (θ-θ0) dθ/dx
    sin = np.maximum(np.sqrt(1.0 - cos**2), 1e-12)
    g1 = -(u2 - cos[:, None] * u1) / (r1 * sin)[:, None]
    g2 = -(u1 - cos[:, None] * u2) / (r2 * sin)[:, None]
    fa1 = -_K_ANGLE * (th - th0)[:, None] * g1
    fa2 = -_K_ANGLE * (th - th0)[:, None] * g2
    F[:, 1] = fb1 + fa1
    F[:, 2] = fb2 + fa2
    F[:, 0] = -(F[:, 1] + F[:, 2])
    return float(e), F.reshape(-1, 3)


def liquid_box_frames(
    n_molecules: int,
    *,
    density_g_cm3: float,
    n_frames: int,
    temperature: float,
    dt: float,
    friction: float,
    equilibration_steps: int,
    interval: int,
    displacement_std: Sequence[float],
    seed: int,
    cutoff: float = 4.5,
    progress=None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Liquid-water configurations in a periodic cube (see the module docstring): flexible
    TIP3P-like Langevin MD.

    Args:
        n_molecules: waters in the box.
        density_g_cm3: mass density; fixes the cube edge L (:func:`box_length`).
        n_frames: frames returned, one every ``interval`` steps after ``equilibration_steps``.
        temperature: Langevin target [K] of the classical MD.
        dt: time step [fs] (flexible O–H: ≤ 0.5 fs).
        friction: Langevin friction [1/fs].
        displacement_std: Gaussian displacement std [σ_O, σ_H] Å added to every atom of each
            returned frame (independent per frame), giving intramolecular distortions.
        seed: seeds the lattice, velocities, Langevin noise and displacements.
        cutoff: TIP3P interaction cutoff [Å], below L/2.

    Returns:
        ``(Z int [3n], R float64 [n_frames, 3n, 3] Å wrapped into the box, L Å)``.
    """
    from ase import Atoms
    from ase import units as ase_units
    from ase.calculators.calculator import Calculator, all_changes
    from ase.calculators.tip3p import TIP3P
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    Z, R0, L = water_box_geometry(n_molecules, density_g_cm3=density_g_cm3, seed=seed)
    if cutoff >= L / 2:
        raise ValueError(f"liquid_box_frames: cutoff {cutoff} Å must be below half the box edge ({L / 2:.3f} Å)")
    inter = TIP3P(rc=cutoff, width=1.0)

    class _FlexibleTIP3P(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            # TIP3P's calculator takes the molecules' own (unwrapped) geometry: keep the
            # dynamics unwrapped and let it apply the minimum image between molecules.
            inter.calculate(self.atoms, ["energy", "forces"], all_changes)
            e, f = _intramolecular(self.atoms.positions)
            self.results = {"energy": inter.results["energy"] + e, "forces": inter.results["forces"] + f}

    atoms = Atoms(numbers=Z, positions=R0, cell=[L, L, L], pbc=True)
    atoms.calc = _FlexibleTIP3P()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    md = Langevin(atoms, timestep=dt * ase_units.fs, temperature_K=temperature, friction=friction / ase_units.fs,
                  rng=rng)
    total = equilibration_steps + n_frames * interval
    md.run(equilibration_steps)
    sigma = np.where(Z == 8, displacement_std[0], displacement_std[1])[:, None]
    frames = []
    for k in range(n_frames):
        md.run(interval)
        R = _wrap_molecules(atoms.get_positions() + sigma * rng.normal(size=(len(Z), 3)), L)
        frames.append(R)
        if progress:
            progress(equilibration_steps + (k + 1) * interval, total)
    return Z, np.asarray(frames), L


def sample_water_recipe(spec: dict, labeler, *, log=lambda s: None) -> dict:
    """The configurations of a ``water_clusters`` or ``water_box`` recipe sampler.

    ``water_clusters``: ``parts`` [{``sizes``, ``runs``, ``frames_per_run``}], ``temperature``
    [K], ``dt`` [fs], ``friction`` [1/fs], ``equilibration_steps``, ``interval``,
    ``opt_fmax`` [eV/Å], ``opt_steps``, ``density`` [g/cm³], ``seed``; every run starts from
    its own :func:`water_cluster_geometry` (seed ``seed + 1000 n + run``) and samples with
    :func:`cluster_md_frames` on ``labeler``'s potential.

    ``water_box``: ``n_molecules``, ``density`` [g/cm³], ``n_frames``, ``temperature``, ``dt``,
    ``friction``, ``equilibration_steps``, ``interval``, ``displacement_std`` [σ_O, σ_H] Å,
    ``seed`` (:func:`liquid_box_frames`); the labeller's cell must be the box.

    Returns:
        dict with ``R`` float64 [n, A, 3] Å (zero-padded), ``Z`` int32 [n, A] (0 = padding),
        ``n_molecules`` int32 [n], ``run`` int32 [n], and ``cell`` [3, 3] (columns, Å) or None.
    """
    kind = spec["kind"]
    if kind == "water_clusters":
        sizes = [(int(n), int(p["runs"]), int(p["frames_per_run"])) for p in spec["parts"] for n in p["sizes"]]
        A = 3 * max(n for n, _, _ in sizes)
        Rs, Zs, nm, run = [], [], [], []
        for n, runs, frames in sizes:
            for r in range(runs):
                seed = int(spec["seed"]) + 1000 * n + r
                Z, R0 = water_cluster_geometry(n, seed=seed, density_g_cm3=spec["density"])
                log(f"(H2O){n}: run {r + 1}/{runs}, {frames} frames of Langevin MD at {spec['temperature']} K ...")
                X = cluster_md_frames(labeler, Z, R0, n_frames=frames, temperature=spec["temperature"], dt=spec["dt"],
                                      friction=spec["friction"], equilibration_steps=spec["equilibration_steps"],
                                      interval=spec["interval"], seed=seed, opt_fmax=spec["opt_fmax"],
                                      opt_steps=spec["opt_steps"])
                pad = np.zeros((frames, A, 3))
                pad[:, : 3 * n] = X
                Rs.append(pad)
                Zs.append(np.broadcast_to(np.pad(Z, (0, A - 3 * n)), (frames, A)))
                nm += [n] * frames
                run += [r] * frames
        return {"R": np.concatenate(Rs), "Z": np.concatenate(Zs).astype(np.int32), "n_molecules": np.asarray(nm, np.int32),
                "run": np.asarray(run, np.int32), "cell": None}
    if kind == "water_box":
        L = box_length(spec["n_molecules"], spec["density"])
        cell = getattr(labeler, "cell", None)
        if cell is None or not np.allclose(np.asarray(cell), L * np.eye(3), atol=1e-6):
            raise ValueError(f"water_box recipe: the labeller's cell must be the {L:.6f} Å cube of "
                             f"{spec['n_molecules']} waters at {spec['density']} g/cm³, got {cell}")
        log(f"liquid water box: {spec['n_molecules']} molecules, L = {L:.4f} Å, classical Langevin MD ...")
        Z, X, _ = liquid_box_frames(spec["n_molecules"], density_g_cm3=spec["density"], n_frames=spec["n_frames"],
                                    temperature=spec["temperature"], dt=spec["dt"], friction=spec["friction"],
                                    equilibration_steps=spec["equilibration_steps"], interval=spec["interval"],
                                    displacement_std=spec["displacement_std"], seed=spec["seed"])
        n = len(X)
        return {"R": X, "Z": np.broadcast_to(Z, X.shape[:2]).astype(np.int32),
                "n_molecules": np.full(n, spec["n_molecules"], np.int32), "run": np.zeros(n, np.int32),
                "cell": L * np.eye(3)}
    raise ValueError(f"sample_water_recipe: unknown kind {kind!r}")
