"""Reference data: the :class:`Dataset`, file formats, PySCF/ASE labellers, samplers,
resumable labelling runs and the datasets shipped with qdyn.

Everything here is NumPy on the host (no JAX, no global settings on import); units are
eV, Å and eV/Å inside, and conversions go through :mod:`qdyn.units`.

Example:
    >>> from qdyn import data
    >>> ds = data.load_shipped("LiH")
    >>> ds.statistics()["n_frames"]
    200
"""

from .dataset import Dataset, assert_datasets_equal, read_index_file, split_indices, write_index_file
from .io import FORMATS, read, write
from .labelers import ASELabeler, FrameResult, Labeler, PySCFLabeler, TBLiteLabeler
from .label_run import label_dataset
from .shipped import SHIPPED, load_shipped, shipped_path

__all__ = [
    "Dataset", "assert_datasets_equal", "read_index_file", "split_indices", "write_index_file",
    "FORMATS", "read", "write",
    "ASELabeler", "FrameResult", "Labeler", "PySCFLabeler", "TBLiteLabeler",
    "label_dataset",
    "SHIPPED", "load_shipped", "shipped_path",
]
