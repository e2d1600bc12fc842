"""A trained model as one self-contained file: compiled-program text plus parameters.

A ``.qdyn`` file is a zip archive (``unzip -l model.qdyn`` lists it) holding

* ``manifest.json``: format version, model name and family, species, cutoff, units, the
  atom count (``null`` when any count works), the molecule template's atom order where the
  model has one, the qdyn and JAX versions that wrote it, its settings (for reference only),
  and the SHA-256 of every other member;
* ``energy_forces.jaxexport``: :func:`jax.export.export` of
  ``(params, R [b, n, 3] Å, Z [b, n]) -> (E [b] eV, F [b, n, 3] eV/Å)`` (serialised
  StableHLO, with the batch size ``b`` and, for descriptor models, the atom count ``n``
  symbolic: one file serves any of them);
* ``energy_forces_stress.jaxexport`` (models that take a periodic box): the same with a box
  [b, 3, 3] (columns = lattice vectors, Å) in and the stress [b, 3, 3] eV/Å³ out
  (:func:`qdyn.models.base.energy_forces_stress_fn`);
* ``params.npz``: the parameters, leaf by leaf (read with ``allow_pickle=False``).

Loading needs JAX, NumPy and this module only: not the run directory, the training config,
nor qdyn's model code (PennyLane and Flax are never imported). The programs are float64:
switch it on first (``qdyn.enable_x64()``). Forces and stress are the derivatives taken at
export time, so they equal the run's to rounding (tested to 1e-12 in a fresh process).

Template-based models (siVQLM, generic) are exported for their template's fixed atom count
and take atoms in the template's order (the ASE calculator maps any order onto it).

Example:
    >>> from qdyn.precision import enable_x64; enable_x64()
    >>> import tempfile, pathlib, jax, numpy as np
    >>> from qdyn.models import bpnn
    >>> model = bpnn.build(species=(1, 8), hidden=(8,))
    >>> params = model.init(jax.random.PRNGKey(0))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.qdyn"
    >>> _ = save(path, model, params, platforms=("cpu",))  # default: cpu and cuda
    >>> exported = load(path)
    >>> E, F = exported.energy_and_forces([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], [8, 1, 1])
    >>> F.shape
    (3, 3)
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import __version__
from ..validation import QdynInputError, check_box, check_positions, check_species
from .atom_order import model_template

FORMAT = "qdyn-model"
FORMAT_VERSION = 1
SUFFIX = ".qdyn"
UNITS = {"energy": "eV", "length": "Å", "forces": "eV/Å", "stress": "eV/Å^3"}
_FREE, _PERIODIC, _PARAMS, _MANIFEST = (
    "energy_forces.jaxexport", "energy_forces_stress.jaxexport", "params.npz", "manifest.json")


class ArtefactError(QdynInputError):
    """A model file that is missing, not a qdyn model, of another format version, or corrupted."""


# -- writing ---------------------------------------------------------------------------------
def _batched(fn, periodic: bool):
    from ..system import System

    def one(params, R, Z, box=None):
        system = System(species=Z, mask=jnp.ones(Z.shape, bool), box=box)
        return fn(params, R, system)

    axes = (None, 0, 0, 0) if periodic else (None, 0, 0)
    return jax.vmap(one, in_axes=axes)


# Lowered for both so that a file written on a laptop runs on a GPU node (and back); each
# platform's program is compiled only where it runs.
PLATFORMS = ("cpu", "cuda")


def _export(fn, params, n_atoms: Optional[int], periodic: bool, platforms: Sequence[str]) -> bytes:
    from jax import export

    b, n = export.symbolic_shape("b, n") if n_atoms is None else (export.symbolic_shape("b")[0], n_atoms)
    args = [jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), params),
            jax.ShapeDtypeStruct((b, n, 3), jnp.float64), jax.ShapeDtypeStruct((b, n), jnp.int32)]
    if periodic:
        args.append(jax.ShapeDtypeStruct((b, 3, 3), jnp.float64))
    return export.export(jax.jit(fn), platforms=tuple(platforms))(*args).serialize()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save(path: str | Path, model, params, *, source: Optional[str] = None,
         platforms: Sequence[str] = PLATFORMS) -> Path:
    """Write ``model`` with ``params`` as one ``.qdyn`` file (atomically).

    Args:
        path: the file to write.
        model: an :class:`~qdyn.models.base.EnergyModel`.
        params: its parameters (float64).
        source: where the model came from (e.g. the run directory), recorded in the manifest.
        platforms: JAX platforms the programs are lowered for (any subset of cpu, cuda, rocm, tpu).

    Raises:
        QdynInputError: float64 is off, or the model is multistate-only in a way the
            exported energy cannot express (its ground state is exported).
    """
    from ..data.io import atomic_write_bytes
    from ..models.base import energy_and_forces_fn, energy_forces_stress_fn

    if not jax.config.read("jax_enable_x64"):
        raise QdynInputError("exporting needs float64: call qdyn.enable_x64() first")
    template = model_template(model)
    n_atoms = None if template is None else len(template.symbols)
    periodic = template is None  # descriptor models see boxes (minimum image); template circuits do not
    members = {_FREE: _export(_batched(energy_and_forces_fn(model.apply), False), params, n_atoms, False, platforms)}
    if periodic:
        members[_PERIODIC] = _export(_batched(energy_forces_stress_fn(model.apply), True), params, n_atoms, True,
                                     platforms)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    buf = io.BytesIO()
    np.savez(buf, **{f"leaf{i:04d}": np.asarray(v) for i, (_, v) in enumerate(leaves)})
    members[_PARAMS] = buf.getvalue()
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "qdyn_version": __version__,
        "jax_version": jax.__version__, "name": model.name, "family": model.config.get("family"),
        "species": [int(z) for z in model.species], "cutoff": model.config.get("cutoff"),
        "n_atoms": n_atoms, "periodic": periodic, "units": UNITS, "dtype": "float64",
        "platforms": list(platforms),
        "template": None if template is None else {"species": list(template.species),
                                                   "vectors": [list(v) for v in template.vectors],
                                                   "name": template.name},
        "param_names": [jax.tree_util.keystr(p) for p, _ in leaves],
        "config": model.config, "source": source,
        "sha256": {name: _sha256(data) for name, data in members.items()},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
        for name, data in members.items():
            zf.writestr(name, data)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


# -- reading ---------------------------------------------------------------------------------
def _read_members(path: Path) -> tuple[dict, dict]:
    try:
        with zipfile.ZipFile(path) as zf:
            members = {name: zf.read(name) for name in zf.namelist()}
    except FileNotFoundError:
        raise ArtefactError(f"{path}: no such model file") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ArtefactError(f"{path}: not a qdyn model file (not a readable zip archive: {e})") from None
    try:
        manifest = json.loads(members.pop(_MANIFEST))
    except (KeyError, json.JSONDecodeError):
        raise ArtefactError(f"{path}: not a qdyn model file (no readable {_MANIFEST})") from None
    if manifest.get("format") != FORMAT:
        raise ArtefactError(f"{path}: not a qdyn model file (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtefactError(f"{path}: model file format version {manifest.get('format_version')}, "
                            f"this qdyn reads version {FORMAT_VERSION}")
    for name, digest in manifest["sha256"].items():
        if name not in members:
            raise ArtefactError(f"{path}: member {name} is missing")
        if _sha256(members[name]) != digest:
            raise ArtefactError(f"{path}: member {name} is corrupted (checksum mismatch)")
    return manifest, members


class ExportedModel:
    """A loaded ``.qdyn`` file: energies, forces and (periodic models) stress.

    Attributes:
        manifest: the file's manifest (dict).
        species: atomic numbers the model was trained on.
        cutoff: descriptor cutoff [Å] (None for template models).
        n_atoms: the fixed atom count, or None when any count works.
        periodic: whether it takes a periodic box (and gives stress).
        template_species, template_vectors: a template model's atom order and difference
            vectors (None otherwise).
    """

    def __init__(self, manifest: dict, members: dict, path: Path):
        from jax import export

        self.manifest, self.path = manifest, path
        backend = jax.default_backend()
        platforms = set(manifest["platforms"])
        if backend not in platforms and not (backend == "gpu" and platforms & {"cuda", "rocm"}):
            raise ArtefactError(f"{path}: exported for {sorted(platforms)}, this JAX runs on {backend}")
        self.species = tuple(manifest["species"])
        self.cutoff = manifest["cutoff"]
        self.n_atoms = manifest["n_atoms"]
        self.periodic = manifest["periodic"]
        template = manifest["template"]
        self.template_species = None if template is None else tuple(template["species"])
        self.template_vectors = None if template is None else tuple(tuple(v) for v in template["vectors"])
        free = export.deserialize(bytearray(members[_FREE]))
        with np.load(io.BytesIO(members[_PARAMS]), allow_pickle=False) as z:
            leaves = [z[f"leaf{i:04d}"] for i in range(len(z.files))]
        params_tree = jax.tree_util.treedef_children(jax.tree_util.treedef_children(free.in_tree)[0])[0]
        self.params = jax.tree_util.tree_unflatten(params_tree, [jnp.asarray(v) for v in leaves])
        self._free = jax.jit(free.call)
        self._periodic = jax.jit(export.deserialize(bytearray(members[_PERIODIC])).call) if self.periodic else None

    @property
    def name(self) -> str:
        return self.manifest["name"]

    def check(self, R, numbers, box=None) -> tuple[np.ndarray, np.ndarray]:
        """Validate one structure on the host (one clear line per problem); returns
        (R float64 [n, 3], Z int32 [n])."""
        if not jax.config.read("jax_enable_x64"):
            raise QdynInputError(f"{self.path}: the model is float64; call qdyn.enable_x64() first")
        Z = np.asarray(numbers, np.int32)
        R = check_positions(R, n_atoms=len(Z))
        check_species(Z, self.species)
        if self.n_atoms is not None and tuple(Z.tolist()) != self.template_species:
            raise QdynInputError(f"{self.name}: atoms must be {self.template_species} in this order, "
                                 f"got {tuple(Z.tolist())} (the ASE calculator maps any order)")
        if box is not None:
            if not self.periodic:
                raise QdynInputError(f"{self.name} is a model of a free molecule: it takes no periodic box")
            check_box(box, self.cutoff)
        return R, Z

    def energy_and_forces(self, R, numbers) -> tuple[float, np.ndarray]:
        """Energy [eV] and forces [n, 3] eV/Å of one free (non-periodic) structure."""
        R, Z = self.check(R, numbers)
        E, F = self._free(self.params, jnp.asarray(R[None]), jnp.asarray(Z[None]))
        return float(E[0]), np.asarray(F[0])

    def energy_forces_stress(self, R, numbers, box) -> tuple[float, np.ndarray, np.ndarray]:
        """Energy [eV], forces [n, 3] eV/Å and stress [3, 3] eV/Å³ (ASE's sign) of one
        periodic structure; ``box`` [3, 3] has the lattice vectors as columns [Å]."""
        box = np.asarray(box, float)
        R, Z = self.check(R, numbers, box)
        E, F, S = self._periodic(self.params, jnp.asarray(R[None]), jnp.asarray(Z[None]), jnp.asarray(box[None]))
        return float(E[0]), np.asarray(F[0]), np.asarray(S[0])

    def batch(self, R, numbers, box=None) -> tuple[np.ndarray, ...]:
        """Many structures of one atom count at once: R [b, n, 3], numbers [n] or [b, n],
        box None or [b, 3, 3]; returns (E [b], F [b, n, 3]) and, with a box, stress [b, 3, 3]."""
        R = np.asarray(R, float)
        Z = np.broadcast_to(np.asarray(numbers, np.int32), R.shape[:2])
        for i in range(len(R)):
            self.check(R[i], Z[i], None if box is None else np.asarray(box)[i])
        if box is None:
            out = self._free(self.params, jnp.asarray(R), jnp.asarray(Z))
        else:
            out = self._periodic(self.params, jnp.asarray(R), jnp.asarray(Z), jnp.asarray(box, float))
        return tuple(np.asarray(x) for x in out)


def load(path: str | Path) -> ExportedModel:
    """Load a ``.qdyn`` model file written by :func:`save` (checksums verified).

    Raises:
        ArtefactError: missing, not a qdyn model, another format version, or corrupted.
    """
    path = Path(path)
    manifest, members = _read_members(path)
    return ExportedModel(manifest, members, path)
