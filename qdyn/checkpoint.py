"""Checkpoints: atomic, verifiable, no pickle (loading cannot execute code).

Every checkpoint is written through :func:`qdyn.data.io.atomic_write` (temporary name,
fsync, rename) and carries a SHA-256 checksum of its arrays, checked on load; a truncated
or corrupted file is reported by name.

* Training (:func:`save`, :func:`load`, :func:`verify`): ``NAME.msgpack`` (params,
  optimiser state, counters) plus ``NAME.json`` (step, checksum of the msgpack file,
  resolved config, versions); the previous good checkpoint is kept as ``prev``.
* Parameters only (:func:`save_params`, :func:`load_params`): ``params.msgpack`` plus
  ``params.json`` (its checksum, the same record as a training checkpoint's); every load
  checks the checksum and then each leaf's shape and dtype against the model's template.
* Dynamics states (:func:`save_state`, :func:`load_state`): one npz holding the named
  leaves of a (batched) JAX-MD state and a JSON ``__meta__`` (step, frames, settings,
  checksum). Files written before the checksum was added still load.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from .data.io import atomic_savez, atomic_write_bytes, load_npz
from .validation import QdynInputError


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or corrupted."""


def save(directory: str | Path, state: dict, meta: dict, *, name: str = "latest") -> Path:
    """Write ``state`` (a pytree of arrays/scalars) and ``meta`` (JSON) atomically, keeping
    the previous checkpoint as ``prev``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = serialization.msgpack_serialize(serialization.to_state_dict(state))
    data_path, meta_path = directory / f"{name}.msgpack", directory / f"{name}.json"
    if data_path.exists() and meta_path.exists() and name == "latest":
        try:
            verify(directory, name=name)
            shutil.copyfile(data_path, directory / "prev.msgpack")
            shutil.copyfile(meta_path, directory / "prev.json")
        except CheckpointError:
            pass  # never let a bad 'latest' overwrite the good 'prev'
    atomic_write_bytes(data_path, blob)
    atomic_write_bytes(meta_path, json.dumps({**meta, **digest(blob)}, indent=2).encode())
    return data_path


def digest(blob: bytes) -> dict:
    """The checksum record of a file's bytes: ``{"sha256": hex, "bytes": size}``."""
    return {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}


def _check_digest(data_path: Path, blob: bytes, meta: dict, hint: str = "") -> None:
    if len(blob) != meta.get("bytes") or hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(
            f"{data_path} is truncated or corrupted ({len(blob)} bytes, expected {meta.get('bytes')}; "
            f"checksum mismatch){hint}"
        )


def verify(directory: str | Path, *, name: str = "latest") -> dict:
    """Check that the checkpoint exists and matches its recorded checksum; return meta."""
    directory = Path(directory)
    data_path, meta_path = directory / f"{name}.msgpack", directory / f"{name}.json"
    hint = ""
    if name != "prev" and (directory / "prev.msgpack").exists():
        hint = f"; the previous good checkpoint is {directory / 'prev.msgpack'} (resume from it with --from-prev)"
    if not data_path.exists() or not meta_path.exists():
        raise CheckpointError(f"no checkpoint {name!r} in {directory}{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{meta_path} is corrupt ({e}){hint}") from e
    _check_digest(data_path, data_path.read_bytes(), meta, hint)
    return meta


def load(directory: str | Path, template: dict, *, name: str = "latest") -> tuple[dict, dict]:
    """Restore a checkpoint into the structure of ``template``; returns (state, meta)."""
    meta = verify(directory, name=name)
    data_path = Path(directory) / f"{name}.msgpack"
    state = _restore_like(data_path, data_path.read_bytes(), template)
    return state, meta


def _restore_like(path: Path, blob: bytes, template):
    """Decode msgpack ``blob`` into the structure of ``template``, checking every leaf's
    shape and dtype kind (a float leaf of another precision is cast to the template's)."""
    try:
        raw = serialization.msgpack_restore(blob)
        restored = serialization.from_state_dict(template, raw)
    except Exception as e:  # msgpack/flax raise various types for malformed content
        raise CheckpointError(f"{path} cannot be decoded as this model's parameters: {e}") from e
    ref_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    got_leaves = jax.tree_util.tree_leaves(restored)
    if len(got_leaves) != len(ref_leaves):
        raise CheckpointError(f"{path} holds {len(got_leaves)} arrays, this model has {len(ref_leaves)}")
    out = []
    for (key, ref), got in zip(ref_leaves, got_leaves):
        ref_a, got_a = np.asarray(ref), np.asarray(got)
        leaf = jax.tree_util.keystr(key)
        if ref_a.shape != got_a.shape:
            raise CheckpointError(f"{path}: {leaf} has shape {got_a.shape}, this model needs {ref_a.shape}")
        if ref_a.dtype.kind != got_a.dtype.kind:
            raise CheckpointError(f"{path}: {leaf} has dtype {got_a.dtype}, this model needs {ref_a.dtype}")
        out.append(got if got_a.dtype == ref_a.dtype else got_a.astype(ref_a.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


def save_params(path: str | Path, params) -> dict:
    """Just the parameters (the artefact a trained run ships): ``path`` and, beside it, its
    checksum record (``params.msgpack`` -> ``params.json``). Returns the record."""
    path = Path(path)
    blob = serialization.msgpack_serialize(serialization.to_state_dict(params))
    atomic_write_bytes(path, blob)
    record = digest(blob)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(record, indent=2).encode())
    return record


def params_record(path: str | Path) -> dict:
    """The checksum record of a :func:`save_params` file (``{"sha256", "bytes"}``)."""
    sidecar = Path(path).with_suffix(".json")
    try:
        record = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{sidecar} is missing: the checksum of {path} is unknown "
                              "(qdyn writes it with every params.msgpack)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{sidecar} is corrupt ({e})") from None
    if not isinstance(record, dict) or "sha256" not in record:
        raise CheckpointError(f"{sidecar} holds no sha256 checksum")
    return record


def load_params(path: str | Path, template):
    """Parameters saved by :func:`save_params`, checked against their checksum and against
    ``template`` (e.g. ``model.init(key)``): leaf names, shapes and dtype kinds."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no parameter file {path}") from None
    _check_digest(path, blob, params_record(path))
    return _restore_like(path, blob, template)


# -- dynamics states (MD restart, last good state) -----------------------------------------
def _named_leaves(state):
    flat, treedef = jax.tree_util.tree_flatten_with_path(state)
    return [(jax.tree_util.keystr(p), np.asarray(v)) for p, v in flat], treedef


def arrays_sha256(arrays) -> str:
    """SHA-256 of arrays' dtypes, shapes and bytes, in order (identifies a state or a
    set of parameters independently of how it was serialised)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_state(path, state, meta: dict) -> Path:
    """Write a (batched) JAX-MD state and ``meta`` (JSON) to ``path`` (npz, atomic, with
    the SHA-256 of the leaves in the meta)."""
    named, _ = _named_leaves(state)
    arrays = {f"leaf{i:03d}": v for i, (_, v) in enumerate(named)}
    arrays["__names__"] = np.array([n for n, _ in named])
    arrays["__meta__"] = np.array(json.dumps({**meta, "sha256": arrays_sha256(v for _, v in named)}))
    atomic_savez(Path(path), arrays)
    return Path(path)


def load_state(path, template):
    """(state, meta) from a :func:`save_state` file, shaped like ``template``.

    Raises:
        QdynInputError: the file does not match the template (another ensemble, replica
            count or atom count).
        CheckpointError: its arrays do not match their checksum.
    """
    z = load_npz(Path(path))
    named, treedef = _named_leaves(template)
    names = [str(n) for n in z["__names__"]]
    if names != [n for n, _ in named]:
        raise QdynInputError(f"{path}: state fields {names} do not match this run's {[n for n, _ in named]}")
    raw = [z[f"leaf{i:03d}"] for i in range(len(named))]
    meta = json.loads(str(z["__meta__"]))
    if "sha256" in meta and meta.pop("sha256") != arrays_sha256(raw):
        raise CheckpointError(f"{path} is corrupted (checksum mismatch)")
    for (name, ref), v in zip(named, raw):
        if v.shape != ref.shape:
            raise QdynInputError(f"{path}: field {name} has shape {v.shape}, this run needs {ref.shape}")
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v, dtype=ref.dtype) for (_, ref), v in zip(named, raw)]), meta
