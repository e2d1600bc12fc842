"""Trajectory analysis of qdyn MD output (``qdyn analyze``).

* :mod:`.trajectory`: one reader for qdyn's H5MD and extended-XYZ trajectories, and an
  MDAnalysis ``Universe`` of the same frames.
* :mod:`.diffusion`: unwrapping, mean-squared displacement, diffusion coefficient with a
  fit range and a block error.
* :mod:`.hbonds`: geometric hydrogen bonds of water, counts per molecule and lifetimes.
* :mod:`.reduction`: features (pair distances, aligned positions), PCA, TICA, clustering
  (scikit-learn and deeptime, the ``analysis`` extra).

The radial distribution and vibrational spectrum stay in :mod:`qdyn.md.analysis`.
Host NumPy throughout; units Å, fs, Å/fs (diffusion also in cm²/s).
"""

from .diffusion import diffusion_coefficient, mean_squared_displacement, unwrap
from .hbonds import hydrogen_bonds, water_molecules
from .trajectory import Trajectory, load_trajectory

__all__ = ["Trajectory", "load_trajectory", "unwrap", "mean_squared_displacement", "diffusion_coefficient",
           "water_molecules", "hydrogen_bonds"]
