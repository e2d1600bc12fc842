"""Starting geometries [Å] of the organic and organometallic molecules qdyn's recipes sample.

Each is built from a Z-matrix of textbook bond lengths, angles and dihedrals (no files, no
network), close enough to a minimum that a few optimiser steps at any level of theory reach
it; the recipes optimise before sampling. Atom orders:

* ``ethanol`` C2H5OH: C(methyl) C(methylene) O H(O) H H H (methyl) H H (methylene) —
  hydroxyl H anti to the methyl.
* ``malonaldehyde`` enol HO-CH=CH-CH=O with its intramolecular hydrogen bond:
  C(central) C(aldehyde) C(enol) O(carbonyl) O(hydroxyl) H(O) H(central) H(aldehyde) H(enol).
* ``alanine_dipeptide`` Ace-Ala-NMe (22 atoms), backbone (φ, ψ) = (−80°, 80°) (C7eq):
  C O N H (acetyl carbonyl, amide) … see :func:`alanine_dipeptide`.
* ``ferrocene`` Fe(C5H5)2, eclipsed (D5h): Fe, five C and five H of each ring.

Example:
    >>> Z, R = MOLECULES["ethanol"]()
    >>> Z.tolist(), R.shape
    ([6, 6, 8, 1, 1, 1, 1, 1, 1], (9, 3))
"""

from __future__ import annotations

import numpy as np

__all__ = ["MOLECULES", "from_zmatrix", "ethanol", "malonaldehyde", "alanine_dipeptide", "ferrocene",
           "structure_entry"]


def _place(a, b, c, bond: float, angle_deg: float, dihedral_deg: float) -> np.ndarray:
    """Position of atom d with |cd| = bond, angle b-c-d and dihedral a-b-c-d (NeRF)."""
    theta, phi = np.deg2rad(angle_deg), np.deg2rad(dihedral_deg)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    local = bond * np.array([-np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)])
    return c + local[0] * bc + local[1] * m + local[2] * n


def from_zmatrix(rows) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian coordinates from a Z-matrix.

    Args:
        rows: ``(Z, (c, bond), (b, angle°), (a, dihedral°))`` per atom, indices into the
            atoms already placed; the first atom takes only Z, the second ``(c, bond)``,
            the third adds ``(b, angle)``.

    Returns:
        (Z int [n], R float64 [n, 3] Å).
    """
    Z, R = [], []
    for k, row in enumerate(rows):
        Z.append(row[0])
        if k == 0:
            R.append(np.zeros(3))
        elif k == 1:
            R.append(np.array([row[1][1], 0.0, 0.0]))
        elif k == 2:
            (c, bond), (b, angle) = row[1], row[2]
            # any a off the b-c line fixes the plane of the first three atoms (the xy plane)
            a = R[b] + np.array([0.0, 1.0, 0.0]) if abs((R[c] - R[b])[1]) < 1e-9 else R[b] + np.array([1.0, 0.0, 0.0])
            R.append(_place(a, R[b], R[c], bond, angle, 0.0))
        else:
            (c, bond), (b, angle), (a, dihedral) = row[1], row[2], row[3]
            R.append(_place(R[a], R[b], R[c], bond, angle, dihedral))
    return np.asarray(Z, dtype=np.int32), np.asarray(R)


def ethanol():
    """Ethanol (anti conformer): (Z [9], R [9, 3] Å)."""
    return from_zmatrix([
        (6,),
        (6, (0, 1.52)),
        (8, (1, 1.43), (0, 108.0)),
        (1, (2, 0.97), (1, 108.5), (0, 180.0)),
        (1, (0, 1.09), (1, 110.5), (2, 180.0)),
        (1, (0, 1.09), (1, 110.5), (2, 60.0)),
        (1, (0, 1.09), (1, 110.5), (2, -60.0)),
        (1, (1, 1.10), (0, 110.0), (2, 120.0)),
        (1, (1, 1.10), (0, 110.0), (2, -120.0)),
    ])


def malonaldehyde():
    """Malonaldehyde, the hydrogen-bonded enol (Cs): (Z [9], R [9, 3] Å)."""
    return from_zmatrix([
        (6,),
        (6, (0, 1.44)),
        (6, (0, 1.37), (1, 120.0)),
        (8, (1, 1.24), (0, 123.0), (2, 0.0)),
        (8, (2, 1.33), (0, 124.0), (1, 0.0)),
        (1, (4, 0.99), (2, 106.0), (0, 0.0)),
        (1, (0, 1.08), (1, 119.0), (2, 180.0)),
        (1, (1, 1.10), (0, 116.0), (2, 180.0)),
        (1, (2, 1.08), (0, 123.0), (1, 180.0)),
    ])


def alanine_dipeptide(phi_deg: float = -80.0, psi_deg: float = 80.0):
    """Ace-Ala-NMe with trans amides at backbone (φ, ψ) [°]: (Z [22], R [22, 3] Å).

    Order: 0 C(acetyl methyl) 1 C(acetyl carbonyl) 2 O 3 N 4 H(N) 5 Cα 6 C(carbonyl)
    7 O 8 N 9 H(N) 10 C(N-methyl) 11 Cβ 12 Hα 13–15 H(acetyl methyl) 16–18 H(Cβ)
    19–21 H(N-methyl). φ is the dihedral 1-3-5-6, ψ is 3-5-6-8.
    """
    return from_zmatrix([
        (6,),
        (6, (0, 1.52)),
        (8, (1, 1.23), (0, 121.0)),
        (7, (1, 1.34), (0, 115.0), (2, 180.0)),
        (1, (3, 1.01), (1, 119.0), (2, 180.0)),
        (6, (3, 1.46), (1, 122.0), (2, 0.0)),
        (6, (5, 1.53), (3, 110.0), (1, phi_deg)),
        (8, (6, 1.23), (5, 121.0), (3, psi_deg - 180.0)),
        (7, (6, 1.34), (5, 115.0), (3, psi_deg)),
        (1, (8, 1.01), (6, 119.0), (7, 180.0)),
        (6, (8, 1.45), (6, 122.0), (7, 0.0)),
        (6, (5, 1.53), (3, 110.0), (1, phi_deg + 120.0)),
        (1, (5, 1.09), (3, 109.0), (1, phi_deg - 120.0)),
        (1, (0, 1.09), (1, 109.5), (3, 0.0)),
        (1, (0, 1.09), (1, 109.5), (3, 120.0)),
        (1, (0, 1.09), (1, 109.5), (3, 240.0)),
        (1, (11, 1.09), (5, 109.5), (3, 60.0)),
        (1, (11, 1.09), (5, 109.5), (3, 180.0)),
        (1, (11, 1.09), (5, 109.5), (3, 300.0)),
        (1, (10, 1.09), (8, 109.5), (6, 0.0)),
        (1, (10, 1.09), (8, 109.5), (6, 120.0)),
        (1, (10, 1.09), (8, 109.5), (6, 240.0)),
    ])


def ferrocene(*, ring_distance: float = 1.65, cc: float = 1.43, ch: float = 1.08):
    """Eclipsed ferrocene, rings perpendicular to z: (Z [21], R [21, 3] Å).

    Args:
        ring_distance: Fe to each ring centre [Å].
        cc: C–C bond [Å] (regular pentagon).
        ch: C–H bond [Å], in the ring plane.
    """
    ring_radius = cc / (2 * np.sin(np.pi / 5))
    angles = 2 * np.pi * np.arange(5) / 5
    Z, R = [26], [np.zeros(3)]
    for z in (ring_distance, -ring_distance):
        for radius, element in ((ring_radius, 6), (ring_radius + ch, 1)):
            for a in angles:
                Z.append(element)
                R.append(np.array([radius * np.cos(a), radius * np.sin(a), z]))
    return np.asarray(Z, dtype=np.int32), np.asarray(R)


MOLECULES = {"ethanol": ethanol, "malonaldehyde": malonaldehyde, "alanine_dipeptide": alanine_dipeptide,
             "ferrocene": ferrocene}


def structure_entry(name: str) -> dict:
    """A recipe's ``structure`` entry (coordinates inline, rounded to 1e-6 Å) for a molecule here."""
    Z, R = MOLECULES[name]()
    return {"name": name, "Z": [int(z) for z in Z], "R": np.round(R, 6).tolist()}
