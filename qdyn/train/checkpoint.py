"""Atomic, verifiable checkpoints in msgpack (no pickle: loading cannot execute code).

Each checkpoint is ``NAME.msgpack`` (the arrays: params, optimiser state, counters) plus
``NAME.json`` (step, SHA-256 of the msgpack file, resolved config, versions). Files are
written to a temporary name, flushed and fsynced, then renamed over the old ones; the
previous good checkpoint is kept as ``prev``. A truncated or corrupted file is detected by
its checksum and reported with the path of the previous good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from flax import serialization


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or corrupted."""


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    _write_atomic(data_path, blob)
    meta = {**meta, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    _write_atomic(meta_path, json.dumps(meta, indent=2).encode())
    return data_path


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
    blob = data_path.read_bytes()
    if len(blob) != meta.get("bytes") or hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(
            f"{data_path} is truncated or corrupted ({len(blob)} bytes, expected {meta.get('bytes')}; "
            f"checksum mismatch){hint}"
        )
    return meta


def load(directory: str | Path, template: dict, *, name: str = "latest") -> tuple[dict, dict]:
    """Restore a checkpoint into the structure of ``template``; returns (state, meta)."""
    meta = verify(directory, name=name)
    blob = (Path(directory) / f"{name}.msgpack").read_bytes()
    try:
        raw = serialization.msgpack_restore(blob)
        state = serialization.from_state_dict(template, raw)
    except Exception as e:  # msgpack/flax raise various types for malformed content
        raise CheckpointError(f"{Path(directory) / (name + '.msgpack')} cannot be decoded: {e}") from e
    return state, meta


def save_params(path: str | Path, params) -> None:
    """Just the parameters (the artefact a trained run ships)."""
    _write_atomic(Path(path), serialization.msgpack_serialize(serialization.to_state_dict(params)))


def load_params(path: str | Path, template):
    try:
        raw = serialization.msgpack_restore(Path(path).read_bytes())
        return serialization.from_state_dict(template, raw)
    except FileNotFoundError as e:
        raise CheckpointError(f"no parameter file {path}") from e
    except Exception as e:
        raise CheckpointError(f"{path} cannot be decoded as qdyn parameters: {e}") from e
