"""Recipes: a dataset described as JSON, enough to regenerate it with one command.

A recipe names the starting structure (with its coordinates inline), the labeller and the
sampler. :func:`run_recipe` samples the configurations (optimising the reference geometry
and computing its Hessian with the recipe's own labeller where the sampler needs them),
labels them with :func:`qdyn.data.label_run.label_dataset` and stores the recipe, the
resulting reference data and the regeneration command in the dataset's metadata. The
reference geometry, Hessian and sampled configurations are cached next to the labels, so a
resumed run never recomputes them and samples exactly the same configurations.

Sampler kinds (``recipe["sampler"]["kind"]``):

* ``"single"`` — the structure itself.
* ``"thermal"`` — :func:`qdyn.data.samplers.thermal_normal_modes` around the optimised
  structure (optimised, and its Hessian computed, with the part's own ``labeler`` when it
  names one, else with the recipe's): ``n``, ``temperatures`` [K, K], ``seed``, ``distribution``,
  ``random_orientation``, ``min_wavenumber`` [cm^-1], ``clash_scale``, ``optimize``,
  ``fmax`` [eV/Å].
* ``"scan"`` — :func:`qdyn.data.samplers.scan`: ``atoms`` [i, j], ``start``, ``stop`` [Å], ``n``.
* ``"cluster"`` — :func:`qdyn.data.samplers.cluster_configurations` with the structure's
  molecules as monomers: ``n``, ``distance_range`` [Å, Å], ``seed``, ``orientation``,
  ``rotation_std_deg``, ``reference_atoms``, ``clash_scale``, ``optimize``, ``fmax`` and
  ``monomer_pool`` {``n``, ``temperatures``, ``seed``} (thermal samples of each monomer).
* ``"triatomic"`` — :func:`qdyn.data.samplers.triatomic` (central atom first): ``n``,
  ``r1``, ``r2`` [Å], ``angle_deg``, each fixed or ``[lo, hi]``; ``mode`` (scan | random),
  ``seed``, ``random_orientation``, ``keep_first``.
* ``"md"`` — Langevin MD on a cheaper sampling potential (:func:`qdyn.data.water.cluster_md_frames`,
  BFGS-relaxed first): ``labeler`` (a labeller spec, e.g. GFN2-xTB), ``temperatures`` [K],
  ``frames_per_temperature``, ``dt`` [fs], ``friction`` [1/fs], ``equilibration_steps``,
  ``interval`` (steps between frames), ``seed`` (run k uses ``seed + k``), ``opt_fmax`` [eV/Å].
* ``"torsion"`` — :func:`qdyn.data.samplers.torsion_scan` of the optimised structure: ``axis``
  [i, j], ``move`` (atom indices), ``n`` angles over 360°, ``optimize``, ``fmax`` [eV/Å].
* ``"dihedral_grid"`` — :func:`qdyn.data.dihedral_grid.dihedral_grid_frames` on the part's
  ``labeler`` (e.g. GFN2-xTB): one jittered target per cell of an ``n`` grid over the
  ``dihedrals`` (atom quadruples), a restrained relaxation and short restrained Langevin MD
  there: ``seed``, ``jitter``, ``k_eV_per_rad2``, ``fmax`` [eV/Å], ``opt_steps``,
  ``temperatures`` [K] (cycled over the cells), ``dt`` [fs], ``friction`` [1/fs],
  ``equilibration_steps``, ``interval``, ``frames_per_point``.
* ``"mixture"`` — ``parts``: a list of the above, concatenated (``extras['sampler_part']``).
* ``"water_clusters"`` / ``"water_box"`` — (H2O)n clusters from Langevin MD on the labeller's
  own potential, and a periodic liquid-water box (see :func:`qdyn.data.water.sample_water_recipe`);
  these recipes name a ``TBLiteLabeler`` (``labeler["labeler"]``) and ignore ``structure``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import shlex
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .. import structures
from ..validation import QdynInputError
from .dataset import Dataset
from .io import atomic_savez, load_npz
from .labelers import PySCFLabeler, labeler_from_spec
from .label_run import ProgressFn, default_cache_dir, label_dataset, pyscf_threads
from . import molecules, samplers
from . import water as _water

__all__ = ["SHIPPED_RECIPES", "get_recipe", "structure_entry", "sample_configurations", "run_recipe", "code_versions"]

LogFn = Callable[[str], None]


STRUCTURE_PRESETS = structures.PRESETS


def structure_entry(name: str) -> dict:
    """A recipe's ``structure`` entry for a named qdyn structure (coordinates inline)."""
    if name not in STRUCTURE_PRESETS:
        raise QdynInputError(f"unknown structure {name!r}; known: {sorted(STRUCTURE_PRESETS)} (or give a structure file)")
    R, system = STRUCTURE_PRESETS[name]()
    return {"name": name, "Z": [int(z) for z in np.asarray(system.species)], "R": np.asarray(R).tolist()}


_B3LYP_SVP = {"method": "DFT", "xc": "B3LYP", "basis": "def2-SVP", "grid_level": 3, "grid_response": True,
              "conv_tol": 1e-10, "max_cycle": 100}

SHIPPED_RECIPES = {
    "H2O": {
        "name": "H2O",
        "description": "H2O at B3LYP/def2-SVP: thermal normal-mode sampling 300-1000 K, random orientations",
        "structure": "water",
        "labeler": _B3LYP_SVP,
        "sampler": {"kind": "thermal", "n": 500, "temperatures": [300.0, 1000.0], "seed": 0,
                    "distribution": "classical", "random_orientation": True, "min_wavenumber": 50.0,
                    "optimize": True, "fmax": 1e-3},
    },
    "H2O_stretched": {
        "name": "H2O_stretched",
        "description": ("H2O at B3LYP/def2-SVP (the level of 'H2O') far from equilibrium: random O-H 0.8-1.9 "
                        "Angstrom and H-O-H 75-165 degrees, random orientations; one-bond and symmetric stretch "
                        "scans to 2.0 Angstrom. Bounds the models' bond-breaking region: a model trained on "
                        "near-equilibrium data alone may have spurious minima at long bonds (docs/md.md)"),
        "structure": "water",
        "labeler": _B3LYP_SVP,
        "sampler": {"kind": "mixture", "parts": [
            {"kind": "triatomic", "mode": "random", "n": 120, "r1": [0.8, 1.9], "r2": [0.8, 1.9],
             "angle_deg": [75.0, 165.0], "seed": 21, "random_orientation": True},
            {"kind": "triatomic", "mode": "scan", "n": 14, "r1": [0.75, 2.0], "r2": 0.965, "angle_deg": 104.0,
             "seed": 0},
            {"kind": "triatomic", "mode": "scan", "n": 12, "r1": [0.8, 1.9], "r2": "r1", "angle_deg": 104.0,
             "seed": 0},
        ]},
    },
    "LiH": {
        "name": "LiH",
        "description": "LiH at CCSD/cc-pVDZ: bond scan 1.2-4.0 Angstrom",
        "structure": "lih",
        "labeler": {"method": "CCSD", "basis": "cc-pVDZ", "conv_tol": 1e-10, "max_cycle": 100,
                    "cc_max_cycle": 200, "cc_conv_tol": 1e-9},
        "sampler": {"kind": "scan", "atoms": [0, 1], "start": 1.2, "stop": 4.0, "n": 200},
    },
    "CaH2": {
        "name": "CaH2",
        "description": ("CaH2 S0/S1 at TDA-B3LYP/def2-SVP (docs/multistate.md): random (r1, r2, angle) in "
                        "1.75-3.4 Angstrom, 70-180 degrees, random orientations; scans of the bend, the "
                        "symmetric and the asymmetric stretch; the bend 30-75 degrees where the S0/S1 gap "
                        "closes (random, a bend scan and a stretch at 50 degrees) and on towards Ca + H2; compressed "
                        "Ca-H and H-H"),
        "structure": {"name": "CaH2", "Z": [20, 1, 1],
                      "R": [[0.0, 0.0, 0.0], [2.05, 0.0, 0.0], [-2.05, 0.0, 0.0]]},
        "labeler": {"method": "TDA", "xc": "B3LYP", "basis": "def2-SVP", "n_states": 2, "grid_level": 3,
                    "grid_response": True, "conv_tol": 1e-10, "max_cycle": 100, "stability": True},
        "sampler": {"kind": "mixture", "parts": [
            {"kind": "triatomic", "mode": "random", "n": 84, "keep_first": 36, "r1": [1.75, 3.4], "r2": [1.75, 3.4],
             "angle_deg": [70.0, 180.0], "seed": 11, "random_orientation": True},
            # exact linearity is avoided: S2/S3 (a Pi pair) are degenerate there
            {"kind": "triatomic", "mode": "scan", "n": 9, "r1": 2.05, "r2": "r1", "angle_deg": [70.0, 179.0],
             "seed": 0},
            {"kind": "triatomic", "mode": "scan", "n": 7, "r1": [1.75, 3.2], "r2": "r1", "angle_deg": 150.0,
             "seed": 0},
            {"kind": "triatomic", "mode": "scan", "n": 11, "r1": 2.05, "r2": [1.75, 3.4], "angle_deg": 150.0,
             "seed": 0},
            # Below the 70 degrees of the first set the S0/S1 gap closes (0.035 eV at 50 degrees,
            # r = 2.05 Angstrom; docs/namd.md): the bend scan continued down to 40 degrees, random
            # (r1, r2, angle) around the funnel (asymmetric displacements are what couple the
            # states there) and a symmetric stretch through it. Below ~49 degrees the closed-shell
            # solution that continues from the linear molecule is a saddle (TDA finds a negative
            # root): the labeller follows the instability to the stable solution (stability=True).
            {"kind": "triatomic", "mode": "scan", "n": 16, "r1": 2.05, "r2": "r1", "angle_deg": [30.0, 67.5],
             "seed": 0},
            {"kind": "triatomic", "mode": "random", "n": 30, "r1": [1.85, 2.5], "r2": [1.85, 2.5],
             "angle_deg": [32.0, 75.0], "seed": 12, "random_orientation": True},
            {"kind": "triatomic", "mode": "scan", "n": 7, "r1": [1.85, 2.45], "r2": "r1", "angle_deg": 50.0,
             "seed": 0},
            # Past the funnel S0 falls towards Ca + H2, where trajectories that hop there go:
            # Ca at 2-4.5 Angstrom from H2 (H-H >= 4 r_min^2 sin^2(angle/2) >= 0.55 Angstrom).
            {"kind": "triatomic", "mode": "random", "n": 30, "r1": [2.0, 3.0], "r2": [2.0, 3.0],
             "angle_deg": [16.0, 32.0], "seed": 13, "random_orientation": True},
            {"kind": "triatomic", "mode": "random", "n": 16, "r1": [3.0, 4.5], "r2": [3.0, 4.5],
             "angle_deg": [10.5, 22.0], "seed": 14, "random_orientation": True},
            # Hot trajectories after a hop compress Ca-H to ~1.47 and H2 to ~0.52 Angstrom: short
            # Ca-H bonds at any angle, and Ca + H2 with H-H ~0.67 and ~0.58 Angstrom (angle and
            # distance scanned together).
            {"kind": "triatomic", "mode": "random", "n": 24, "r1": [1.45, 1.8], "r2": [1.7, 2.6],
             "angle_deg": [40.0, 180.0], "seed": 15, "random_orientation": True},
            {"kind": "triatomic", "mode": "random", "n": 10, "r1": [1.45, 1.8], "r2": [1.45, 1.8],
             "angle_deg": [60.0, 180.0], "seed": 16, "random_orientation": True},
            {"kind": "triatomic", "mode": "scan", "n": 6, "r1": [2.2, 3.6], "r2": "r1", "angle_deg": [17.6, 10.6],
             "seed": 0},
            {"kind": "triatomic", "mode": "scan", "n": 6, "r1": [2.2, 3.6], "r2": "r1", "angle_deg": [15.2, 9.2],
             "seed": 0},
        ]},
    },
    "water_dimer": {
        "name": "water_dimer",
        "description": ("(H2O)2 at B3LYP/def2-SVP: near-minimum thermal samples (rigid-body intermolecular "
                        "modes), hydrogen-bonded and random orientations at O-O 2.5-6 Angstrom"),
        "structure": "water_dimer",
        "labeler": _B3LYP_SVP,
        "sampler": {"kind": "mixture", "parts": [
            # Near the minimum: the intermolecular modes are soft and anharmonic (one is
            # slightly imaginary at this grid/fmax), so a lower T range, a 150 cm^-1
            # frequency floor and clash rejection keep the samples near the minimum.
            {"kind": "thermal", "n": 100, "temperatures": [100.0, 400.0], "seed": 1, "distribution": "classical",
             "random_orientation": True, "min_wavenumber": 150.0, "clash_scale": 1.5, "optimize": True, "fmax": 5e-3},
            {"kind": "cluster", "n": 100, "distance_range": [2.5, 6.0], "seed": 2, "orientation": "template",
             "rotation_std_deg": 15.0, "reference_atoms": [0, 0], "clash_scale": 1.5, "optimize": True, "fmax": 5e-3,
             "monomer_pool": {"n": 200, "temperatures": [300.0, 1000.0], "seed": 3}},
            {"kind": "cluster", "n": 100, "distance_range": [2.5, 6.0], "seed": 4, "orientation": "random",
             "rotation_std_deg": 0.0, "reference_atoms": [0, 0], "clash_scale": 1.5, "optimize": True, "fmax": 5e-3,
             "monomer_pool": {"n": 200, "temperatures": [300.0, 1000.0], "seed": 5}},
        ]},
    },
}


# CaH2 near its S0/S1 conical intersection at SA-CASSCF (docs/multistate.md, "CaH2_casscf"): a
# bend x antisymmetric-stretch grid, r1,2 = 2.05 ± delta Angstrom; delta = 0 is the C2v line (1A1
# and 1B2 cross on it); negative delta is the mirror image (H1 <-> H2) of positive delta. Rows
# nearest the intersection first, so an interrupted run has them. 30 frames: 45-80 s each on the
# loaded shared machine (~12 s of CPU), sized to ~35 min of one process; 37 more below (~50 s each).
_CAH2_DELTAS = (0.0, 0.05, 0.1)


def _cah2_scan(n: int, angles, *, r: float = 2.05, delta: float = 0.0) -> dict:
    """A triatomic scan part: H-Ca-H over ``angles`` (degrees), r1,2 = r +- delta (Angstrom)."""
    return {"kind": "triatomic", "mode": "scan", "n": n, "r1": round(r + delta, 4), "r2": round(r - delta, 4),
            "angle_deg": list(angles), "seed": 0}


# Second round (issue 20): the first 30 frames left the apex 45 meV away and had no frame where
# the trajectories start. Added after them, so the first 30 keep their cache, most needed first
# (an interrupted run has those): the C2v line through the apex on a 0.5 degree grid offset
# from the old 2 degree one; a C2v bend scan 70-170 degrees through the Franck-Condon region of
# the S0 minimum (~139 degrees); a small antisymmetric displacement (delta = 0.02 Angstrom)
# across the apex; the C2v plane at two other bond lengths (the seam is a line in (r, angle));
# an asymmetric scan and random frames around the Franck-Condon region.
_CAH2_SEAM_AND_FC = [
    _cah2_scan(10, [50.25, 54.75]),
    _cah2_scan(6, [70.0, 170.0]),
    _cah2_scan(4, [51.0, 54.0], delta=0.02),
    _cah2_scan(4, [48.0, 57.0], r=1.95),
    _cah2_scan(4, [48.0, 57.0], r=2.2),
    _cah2_scan(3, [80.0, 160.0], delta=0.1),
    {"kind": "triatomic", "mode": "random", "n": 6, "r1": [1.9, 2.3], "r2": [1.9, 2.3], "angle_deg": [60.0, 170.0],
     "seed": 20},
]

# Third round (issue 20): FSSH on models of the first 67 frames went to Ca-H 2.6-4.8 A (hops at
# 3.6-3.9 A, bends 35-170 degrees) while every frame had 1.9-2.3 A. Appended, so the 67 keep their
# cache, most needed first: the symmetric stretch r = 1.8-4.0 A at five bends from the near-linear
# S1 start down to the seam (a 7 x 5 grid of the C2v plane the hops sit in), random frames over
# both bonds 1.8-4.2 A and bends 40-178 degrees (the antisymmetric stretch and the way out), and
# one bond stretched to 4.5 A with the other held at 2.05 A (one H leaving). ~12 s of CPU a frame.
_CAH2_STRETCH_ANGLES = (140.0, 175.0, 105.0, 75.0, 55.0)
_CAH2_STRETCH = [
    *({"kind": "triatomic", "mode": "scan", "n": 7, "r1": [1.8, 4.0], "r2": "r1", "angle_deg": a, "seed": 0}
      for a in _CAH2_STRETCH_ANGLES),
    {"kind": "triatomic", "mode": "random", "n": 14, "r1": [1.8, 4.2], "r2": [1.8, 4.2], "angle_deg": [40.0, 178.0],
     "seed": 21},
    *({"kind": "triatomic", "mode": "scan", "n": 5, "r1": 2.05, "r2": [2.5, 4.5], "angle_deg": a, "seed": 0}
      for a in (150.0, 95.0)),
]
SHIPPED_RECIPES["CaH2_casscf"] = {
    "name": "CaH2_casscf",
    "description": ("CaH2 S0/S1/S2 at SA3-CASSCF(4e,6o)/def2-SVP with analytic gradients and nonadiabatic "
                    "couplings: H-Ca-H 43-61 degrees x antisymmetric stretch r1,2 = 2.05 +- delta, "
                    f"delta in {list(_CAH2_DELTAS)} Angstrom, around the 1A1/1B2 conical intersection; the C2v "
                    "line 50-55 degrees at 0.5 degree steps, delta = 0.02, r = 1.95 and 2.2 Angstrom; the "
                    "Franck-Condon region 60-170 degrees; the symmetric stretch r = 1.8-4.0 Angstrom at bends "
                    "55-175 degrees, random r1, r2 1.8-4.2 Angstrom, one H leaving to 4.5 Angstrom (where FSSH goes)"),
    "structure": {"name": "CaH2", "Z": [20, 1, 1], "R": [[0.0, 0.0, 0.0], [2.05, 0.0, 0.0], [-2.05, 0.0, 0.0]]},
    "labeler": {"method": "SA-CASSCF", "basis": "def2-SVP", "ncas": 6, "nelecas": 4, "n_states": 3, "nac": True,
                "conv_tol": 1e-10, "max_cycle": 100},
    "sampler": {"kind": "mixture", "parts": [
        {"kind": "triatomic", "mode": "scan", "n": 10, "r1": round(2.05 + d, 4), "r2": round(2.05 - d, 4),
         "angle_deg": [43.0, 61.0], "seed": 0} for d in _CAH2_DELTAS] + _CAH2_SEAM_AND_FC + _CAH2_STRETCH},
}

# GFN2-xTB (tblite) for every cluster size and the box: one level of theory, so training and
# test sizes are never labelled at different levels (docs/data.md).
_GFN2 = {"labeler": "TBLiteLabeler", "method": "GFN2-xTB", "accuracy": 1.0, "electronic_temperature": 300.0,
         "max_iterations": 250, "charge": 0, "multiplicity": 1}
_BOX32_L = round(_water.box_length(32, 0.997), 10)  # Å, 32 waters at 0.997 g/cm³
SHIPPED_RECIPES["water_clusters"] = {
    "name": "water_clusters",
    "description": ("(H2O)n, n = 2-10 (training sizes, 2 runs x 20 frames) and n = 12-20 even (test sizes, "
                    "15 frames) at GFN2-xTB: jittered-grid starts at liquid density, BFGS, Langevin MD at 300 K"),
    "structure": "water",
    "labeler": dict(_GFN2),
    "sampler": {"kind": "water_clusters", "parts": [
        {"sizes": [2, 3, 4, 5, 6, 7, 8, 9, 10], "runs": 2, "frames_per_run": 20},
        {"sizes": [12, 14, 16, 18, 20], "runs": 1, "frames_per_run": 15}],
        "temperature": 300.0, "dt": 0.5, "friction": 0.01, "equilibration_steps": 200, "interval": 20,
        "opt_fmax": 0.1, "opt_steps": 100, "density": 0.997, "seed": 0},
}
SHIPPED_RECIPES["water_box32"] = {
    "name": "water_box32",
    "description": ("32 H2O in a periodic 0.997 g/cm3 cube at periodic GFN2-xTB: flexible TIP3P-like Langevin MD "
                    "at 300 K (one frame per 50 fs) plus small Gaussian displacements"),
    "structure": "water",
    "labeler": dict(_GFN2, cell=[[_BOX32_L, 0.0, 0.0], [0.0, _BOX32_L, 0.0], [0.0, 0.0, _BOX32_L]]),
    "sampler": {"kind": "water_box", "n_molecules": 32, "density": 0.997, "n_frames": 50, "temperature": 300.0,
                "dt": 0.5, "friction": 0.01, "equilibration_steps": 2000, "interval": 100,
                "displacement_std": [0.01, 0.03], "seed": 0},
}


# rMD17's level of theory (Christensen & von Lilienfeld 2020: PBE/def2-SVP, ORCA). No density
# fitting: on ethanol it saved 8-22 % of the time and moved forces by 0.96-2.7 meV/Å
# (def2-universal-jkfit; benchmarks/build_organics_data.py records the measurement).
# Geometries come from GFN2-xTB (MD, its minimum and Hessian): sampling needs a plausible
# ensemble, not the reference's own minimum, and a DFT optimisation + Hessian costs as much
# as a hundred labels.
_PBE_SVP = {"method": "DFT", "xc": "PBE", "basis": "def2-SVP", "grid_level": 3, "grid_response": True,
            "conv_tol": 1e-10, "max_cycle": 100}
_XTB_MD = {"labeler": dict(_GFN2), "dt": 0.5, "friction": 0.01, "equilibration_steps": 400, "interval": 20,
           "opt_fmax": 0.05}


def _organic_recipe(name: str, labeler: dict, *, md_temperatures, md_frames: int, thermal_n: int,
                    thermal_temperatures, description: str) -> dict:
    return {
        "name": name,
        "description": description,
        "structure": molecules.structure_entry(name),
        "labeler": labeler,
        "sampler": {"kind": "mixture", "parts": [
            {"kind": "md", **copy.deepcopy(_XTB_MD), "temperatures": list(md_temperatures),
             "frames_per_temperature": md_frames, "seed": 1},
            {"kind": "thermal", "labeler": dict(_GFN2), "n": thermal_n, "temperatures": list(thermal_temperatures),
             "seed": 2, "distribution": "classical", "random_orientation": True, "min_wavenumber": 50.0,
             "optimize": True, "fmax": 5e-3},
        ]},
    }


SHIPPED_RECIPES["ethanol"] = _organic_recipe(
    "ethanol", _PBE_SVP, md_temperatures=(300.0, 600.0, 1000.0), md_frames=100, thermal_n=300,
    thermal_temperatures=(100.0, 1000.0),
    description=("ethanol at PBE/def2-SVP (the rMD17 level): GFN2-xTB Langevin MD at 300, 600 and 1000 K "
                 "(100 frames each, 10 fs apart) and 300 normal-mode displacements of the GFN2-xTB minimum "
                 "at 100-1000 K"))
SHIPPED_RECIPES["malonaldehyde"] = _organic_recipe(
    "malonaldehyde", _PBE_SVP, md_temperatures=(300.0, 600.0, 1000.0), md_frames=60, thermal_n=120,
    thermal_temperatures=(100.0, 1000.0),
    description=("malonaldehyde (H-bonded enol) at PBE/def2-SVP: GFN2-xTB Langevin MD at 300, 600 and 1000 K "
                 "(60 frames each) and 120 normal-mode displacements of the GFN2-xTB minimum at 100-1000 K"))
SHIPPED_RECIPES["ethanol_torsions"] = {
    "name": "ethanol_torsions",
    "description": ("ethanol at PBE/def2-SVP: rigid methyl (H-C-C-O) and hydroxyl (H-O-C-C) torsion scans of "
                    "the GFN2-xTB minimum, 12 points each over 360 degrees"),
    "structure": molecules.structure_entry("ethanol"),
    "labeler": dict(_PBE_SVP),
    "sampler": {"kind": "mixture", "parts": [
        {"kind": "torsion", "labeler": dict(_GFN2), "axis": [1, 0], "move": [4, 5, 6], "n": 12, "optimize": True,
         "fmax": 5e-3},
        {"kind": "torsion", "labeler": dict(_GFN2), "axis": [1, 2], "move": [3], "n": 12, "optimize": True,
         "fmax": 5e-3},
    ]},
}
SHIPPED_RECIPES["alanine_dipeptide"] = _organic_recipe(
    "alanine_dipeptide", dict(_GFN2), md_temperatures=(300.0, 600.0), md_frames=100, thermal_n=100,
    thermal_temperatures=(100.0, 600.0),
    description=("alanine dipeptide (Ace-Ala-NMe, C7eq start) at GFN2-xTB: Langevin MD at 300 and 600 K "
                 "(100 frames each, 10 fs apart) and 100 normal-mode displacements at 100-600 K"))
# The Ramachandran plane (benchmarks/ramachandran.py): the set above never leaves C7eq, and a
# metadynamics bias on (φ, ψ) drove a model trained on it into regions it had never seen. One
# jittered (φ, ψ) target in each 30° x 30° cell, held by a 2 eV/rad² restraint (~6° at 300 K)
# through a GFN2-xTB relaxation and 80 fs of Langevin MD, then two frames 30 fs apart; cells
# alternate 300 and 600 K. φ = C1-N3-Cα5-C6, ψ = N3-Cα5-C6-N8 (molecules.alanine_dipeptide).
SHIPPED_RECIPES["alanine_dipeptide_rama"] = {
    "name": "alanine_dipeptide_rama",
    "description": ("alanine dipeptide at GFN2-xTB over the whole Ramachandran plane: one jittered (phi, psi) "
                    "target per 30 x 30 degree cell (144 cells), restrained GFN2-xTB relaxation and restrained "
                    "Langevin MD at 300 or 600 K there, two frames per cell"),
    "structure": molecules.structure_entry("alanine_dipeptide"),
    "labeler": dict(_GFN2),
    "sampler": {"kind": "dihedral_grid", "labeler": dict(_GFN2), "dihedrals": [[1, 3, 5, 6], [3, 5, 6, 8]],
                "n": [12, 12], "seed": 7, "jitter": True, "k_eV_per_rad2": 2.0, "fmax": 0.05, "opt_steps": 200,
                "temperatures": [300.0, 600.0], "dt": 0.5, "friction": 0.01, "equilibration_steps": 100,
                "interval": 60, "frames_per_point": 2},
}
SHIPPED_RECIPES["ferrocene"] = _organic_recipe(
    "ferrocene", dict(_GFN2), md_temperatures=(300.0, 600.0), md_frames=100, thermal_n=100,
    thermal_temperatures=(100.0, 600.0),
    description=("ferrocene (eclipsed start) at GFN2-xTB: Langevin MD at 300 and 600 K (100 frames each, 10 fs "
                 "apart) and 100 normal-mode displacements at 100-600 K"))


def get_recipe(spec: str) -> dict:
    """``"shipped:NAME"``, a JSON recipe file, or a dataset file whose metadata holds a recipe."""
    if spec.startswith("shipped:"):
        name = spec.split(":", 1)[1]
        if name not in SHIPPED_RECIPES:
            raise QdynInputError(f"no shipped recipe {name!r}; known: {sorted(SHIPPED_RECIPES)}")
        return _resolve(copy.deepcopy(SHIPPED_RECIPES[name]))
    p = Path(spec)
    if p.suffix == ".json":
        return _resolve(json.loads(p.read_text()))
    from .io import read

    meta = read(p).metadata
    if "recipe" not in meta:
        raise QdynInputError(f"{p}: metadata has no recipe")
    return _resolve(meta["recipe"])


def _resolve(recipe: dict) -> dict:
    if isinstance(recipe.get("structure"), str):
        recipe["structure"] = structure_entry(recipe["structure"])
    for key in ("name", "structure", "labeler", "sampler"):
        if key not in recipe:
            raise QdynInputError(f"recipe lacks {key!r}")
    return recipe


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


def code_versions() -> dict:
    import ase
    import pyscf
    import scipy

    from .. import __version__

    return {"qdyn": __version__, "pyscf": pyscf.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "ase": ase.__version__, "python": platform.python_version()}


class _Reference:
    """Optimised geometries and Hessians, cached on disk by (labeller, Z, start R, fmax)."""

    def __init__(self, labeler: PySCFLabeler, cache: Path, log: LogFn):
        self.labeler, self.cache, self.log = labeler, cache, log
        self.info: list = []

    def minimum(self, Z, R, *, optimize: bool, fmax: float, hessian: bool):
        key = _hash({"lab": self.labeler.describe(), "Z": np.asarray(Z).tolist(), "R": np.asarray(R).tolist(),
                     "optimize": optimize, "fmax": fmax})
        path = self.cache / f"reference-{key}.npz"
        with pyscf_threads(1):  # one thread: PySCF's threaded reductions are not bitwise reproducible
            if path.exists():
                Ropt = load_npz(path)["R"]
            else:
                Ropt = np.asarray(R, dtype=float)
                if optimize:
                    self.log(f"optimising {len(Z)}-atom reference geometry ...")
                    Ropt = samplers.optimize_geometry(self.labeler, Z, Ropt, fmax=fmax)
                atomic_savez(path, {"R": Ropt})
            H = None
            hpath = self.cache / f"hessian-{key}.npz"
            if hessian and hpath.exists():
                H = load_npz(hpath)["hessian"]
            elif hessian:
                self.log(f"Hessian of {len(Z)}-atom reference ...")
                if self.labeler.method in ("HF", "DFT"):
                    H = self.labeler.hessian(Z, Ropt)
                else:
                    H = samplers.finite_difference_hessian(self.labeler, Z, Ropt)
                atomic_savez(hpath, {"hessian": H})
        entry = {"Z": np.asarray(Z).tolist(), "R_minimum": Ropt.tolist()}
        if H is not None:
            va = samplers.vibrational_analysis(Z, Ropt, H)
            entry["wavenumbers_intra_cm1"] = np.round(va.wavenumbers_intra, 2).tolist()
            entry["wavenumbers_inter_cm1"] = np.round(va.wavenumbers_inter, 2).tolist()
        # in place: parts with their own sampling labeller share this list (_part_reference)
        self.info[:] = [e for e in self.info if e["R_minimum"] != entry["R_minimum"] or len(e) >= len(entry)]
        if not any(e["R_minimum"] == entry["R_minimum"] for e in self.info):
            self.info.append(entry)
        return Ropt, H


def _sample(spec: dict, Z, R, ref: _Reference):
    kind = spec["kind"]
    if kind == "single":
        return np.asarray(R, float)[None]
    ref = _part_reference(spec, ref)
    if kind == "thermal":
        Ropt, H = ref.minimum(Z, R, optimize=spec.get("optimize", True), fmax=spec.get("fmax", 1e-3), hessian=True)
        return samplers.thermal_normal_modes(
            Z, Ropt, H, n=spec["n"], temperatures=tuple(spec["temperatures"]), seed=spec["seed"],
            distribution=spec.get("distribution", "classical"), random_orientation=spec.get("random_orientation", True),
            min_wavenumber=spec.get("min_wavenumber", 50.0), clash_scale=spec.get("clash_scale", 1.5))
    if kind == "scan":
        return samplers.scan(R, atoms=tuple(spec["atoms"]), values=np.linspace(spec["start"], spec["stop"], spec["n"]),
                             move=spec.get("move"))
    if kind == "cluster":
        fmax = spec.get("fmax", 1e-3)
        template, _ = ref.minimum(Z, R, optimize=spec.get("optimize", True), fmax=fmax, hessian=False)
        frags = samplers.fragments(Z, template)
        if len(frags) < 2:
            raise QdynInputError("cluster sampler: the structure has a single molecule")
        if any(not np.array_equal(f, np.arange(f[0], f[0] + len(f))) for f in frags):
            raise QdynInputError("cluster sampler: each molecule's atoms must be contiguous in the structure")
        pool_spec = spec["monomer_pool"]
        monomers = []
        for k, f in enumerate(frags):
            Zm = np.asarray(Z)[f]
            Rm, Hm = ref.minimum(Zm, template[f], optimize=True, fmax=1e-3, hessian=True)
            pool = samplers.thermal_normal_modes(Zm, Rm, Hm, n=pool_spec["n"], temperatures=tuple(pool_spec["temperatures"]),
                                                 seed=pool_spec["seed"] + 1000 * k, random_orientation=False)
            monomers.append((Zm, pool))
        return samplers.cluster_configurations(
            monomers, n=spec["n"], distance_range=tuple(spec["distance_range"]), seed=spec["seed"],
            orientation=spec.get("orientation", "random"), template=template,
            rotation_std_deg=spec.get("rotation_std_deg", 15.0), reference_atoms=spec.get("reference_atoms"),
            clash_scale=spec.get("clash_scale", 1.5))
    if kind == "md":
        return _md_frames(spec, Z, R)
    if kind == "dihedral_grid":
        return _dihedral_grid(spec, Z, R, ref.log)
    if kind == "torsion":
        Ropt, _ = ref.minimum(Z, R, optimize=spec.get("optimize", True), fmax=spec.get("fmax", 1e-3), hessian=False)
        return samplers.torsion_scan(Ropt, axis=tuple(spec["axis"]), move=spec["move"],
                                     angles_deg=np.linspace(0.0, 360.0, spec["n"], endpoint=False))
    if kind == "triatomic":
        return samplers.triatomic(n=spec["n"], r1=spec["r1"], r2=spec["r2"], angle_deg=spec["angle_deg"],
                                  mode=spec.get("mode", "random"), seed=spec.get("seed", 0),
                                  random_orientation=spec.get("random_orientation", False),
                                  keep_first=spec.get("keep_first"))
    raise QdynInputError(f"unknown sampler kind {kind!r}")


def sample_configurations(recipe: dict, *, cache_dir: Optional[str | Path] = None, log: LogFn = lambda s: None) -> Dataset:
    """The recipe's configurations (unlabelled), cached so a rerun gives identical geometries."""
    recipe = _resolve(copy.deepcopy(recipe))
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    labeler = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})
    key = _hash({"structure": recipe["structure"], "labeler": labeler.describe(), "sampler": recipe["sampler"]})
    if recipe["sampler"]["kind"] in ("water_clusters", "water_box"):
        return _water_configurations(recipe, labeler, root / f"samples-{key}.npz", log)
    path = root / f"samples-{key}.npz"
    Z = np.asarray(recipe["structure"]["Z"])
    R = np.asarray(recipe["structure"]["R"], dtype=float)
    ref = _Reference(labeler, root, log)
    sp = recipe["sampler"]
    parts = sp["parts"] if sp["kind"] == "mixture" else [sp]
    if path.exists():
        z = load_npz(path)
        X, part = z["R"], z["sampler_part"]
        # Re-derive the reference summary from the (cached) reference files for metadata.
        for p in parts:
            _reference_only(p, Z, R, ref)
    else:
        log("sampling configurations ...")
        chunks = [_sample(p, Z, R, ref) for p in parts]
        X = np.concatenate(chunks)
        part = np.concatenate([np.full(len(c), k, np.int32) for k, c in enumerate(chunks)])
        atomic_savez(path, {"R": X, "sampler_part": part})
    meta = {"name": recipe["name"], "description": recipe.get("description", ""), "recipe": recipe,
            "sampling": {"reference": ref.info}}
    return Dataset(R=X, Z=np.broadcast_to(Z, X.shape[:2]), extras={"sampler_part": part}, metadata=meta,
                   source=f"recipe:{recipe['name']}")


def _water_configurations(recipe: dict, labeler, path: Path, log: LogFn) -> Dataset:
    if path.exists():
        z = load_npz(path)
    else:
        log("sampling configurations ...")
        z = _water.sample_water_recipe(recipe["sampler"], labeler, log=log)
        atomic_savez(path, {k: v for k, v in z.items() if v is not None})
    n = len(z["R"])
    cell = z.get("cell")
    meta = {"name": recipe["name"], "description": recipe.get("description", ""), "recipe": recipe}
    return Dataset(R=z["R"], Z=z["Z"], cell=None if cell is None else np.broadcast_to(cell, (n, 3, 3)),
                   pbc=None if cell is None else np.ones((n, 3), bool),
                   extras={"n_molecules": z["n_molecules"], "run": z["run"]}, metadata=meta,
                   source=f"recipe:{recipe['name']}")


def _part_reference(spec: dict, ref: _Reference) -> _Reference:
    """A part with its own ``labeler`` takes its minimum (and Hessian) from that potential, e.g.
    GFN2-xTB normal modes labelled at DFT; without one, from the recipe's own labeller."""
    if _has_own_labeler(spec):
        own = _Reference(labeler_from_spec(spec["labeler"]), ref.cache, ref.log)
        own.info = ref.info  # one summary of every minimum used
        return own
    return ref


def _has_own_labeler(spec: dict) -> bool:
    return spec["kind"] in ("thermal", "torsion", "cluster") and "labeler" in spec


def _md_frames(spec: dict, Z, R) -> np.ndarray:
    """One Langevin run per temperature on the sampling labeller (not the recipe's own)."""
    sampling = labeler_from_spec(spec["labeler"])
    runs = []
    for k, T in enumerate(spec["temperatures"]):
        runs.append(_water.cluster_md_frames(
            sampling, np.asarray(Z), np.asarray(R, float), n_frames=spec["frames_per_temperature"], temperature=float(T),
            dt=spec["dt"], friction=spec["friction"], equilibration_steps=spec["equilibration_steps"],
            interval=spec["interval"], seed=spec["seed"] + k, opt_fmax=spec.get("opt_fmax", 0.05)))
    return np.concatenate(runs)


def _dihedral_grid(spec: dict, Z, R, log: LogFn) -> np.ndarray:
    """Restrained umbrella-window frames over a dihedral grid, on the part's own labeller."""
    from .dihedral_grid import dihedral_grid_frames

    return dihedral_grid_frames(
        labeler_from_spec(spec["labeler"]), np.asarray(Z), np.asarray(R, float), dihedrals=spec["dihedrals"],
        n=spec["n"], seed=spec["seed"], jitter=spec.get("jitter", True), k_eV_per_rad2=spec["k_eV_per_rad2"],
        fmax=spec["fmax"], opt_steps=spec["opt_steps"], temperatures=spec["temperatures"], dt=spec["dt"],
        friction=spec["friction"], equilibration_steps=spec["equilibration_steps"], interval=spec["interval"],
        frames_per_point=spec["frames_per_point"], log=log)


def _reference_only(spec, Z, R, ref):
    kind = spec["kind"]
    ref = _part_reference(spec, ref)
    if kind == "torsion":
        ref.minimum(Z, R, optimize=spec.get("optimize", True), fmax=spec.get("fmax", 1e-3), hessian=False)
    if kind == "thermal":
        ref.minimum(Z, R, optimize=spec.get("optimize", True), fmax=spec.get("fmax", 1e-3), hessian=True)
    elif kind == "cluster":
        template, _ = ref.minimum(Z, R, optimize=spec.get("optimize", True), fmax=spec.get("fmax", 1e-3), hessian=False)
        for f in samplers.fragments(Z, template):
            ref.minimum(np.asarray(Z)[f], template[f], optimize=True, fmax=1e-3, hessian=True)


def run_recipe(
    recipe: dict,
    *,
    out: Optional[str | Path],
    workers: int = 1,
    cache_dir: Optional[str | Path] = None,
    progress: Optional[ProgressFn] = None,
    log: LogFn = lambda s: None,
    command: Optional[str] = None,
) -> Dataset:
    """Sample, label and (if ``out``) write a recipe's dataset; resumable through the cache.

    Args:
        recipe: a recipe dict (see module docstring) or from :func:`get_recipe`.
        out: output file (any writable format; ``.npz`` keeps everything), or None.
        workers: labelling processes (one thread each); 0 labels in this process.
        cache_dir: cache root (default ``$QDYN_CACHE_DIR/labels`` or ``~/.cache/qdyn/labels``).
        progress: ``progress(done, total, n_from_cache)``.
        log: receives human-readable stage messages.
        command: the command line to record; default ``qdyn label --recipe <file> ...``.
    """
    recipe = _resolve(copy.deepcopy(recipe))
    if out is not None:
        from .io import output_format

        output_format(out)  # a bad output is refused before hours of labelling, not after
    labeler = labeler_from_spec({"labeler": "PySCFLabeler", **recipe["labeler"]})  # settings checked first
    if hasattr(labeler, "validate"):  # basis, functional, charge/spin: before sampling computes anything
        labeler.validate(np.asarray(recipe["structure"]["Z"]), np.asarray(recipe["structure"]["R"], dtype=float))
    configs = sample_configurations(recipe, cache_dir=cache_dir, log=log)
    if command is None:
        # Any file written here holds its recipe, so this regenerates it from the file alone.
        target = Path(out) if out is not None else Path("DATASET.npz")
        command = f"qdyn label --recipe {shlex.quote(str(target))} --out {shlex.quote(target.stem + '-regenerated' + target.suffix)}"
    meta = {"command": command, "code_versions": code_versions(),
            "seed": _seeds(recipe["sampler"])}
    log(f"labelling {configs.n_frames} configurations with {workers} worker(s) ...")
    ds = label_dataset(configs, labeler, workers=workers, cache_dir=cache_dir, progress=progress, metadata=meta)
    if ds.n_frames and not ds.converged.any():
        first = ds.metadata["labelling"]["failures"][0]["status"]
        raise QdynInputError(f"labelling failed for every one of the {ds.n_frames} frames (frame 0: "
                             f"{' '.join(first.split())[:300]}); nothing written")
    if out is not None:
        from .io import write

        write(ds, out)
    return ds


def _seeds(sampler: dict):
    parts = sampler["parts"] if sampler["kind"] == "mixture" else [sampler]
    return [p.get("seed") for p in parts]
