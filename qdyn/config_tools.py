"""Config tools behind ``qdyn template --full``, ``qdyn schema`` and ``qdyn validate``.

Everything is generated from the pydantic classes (:class:`qdyn.train.config.TrainConfig`,
:class:`qdyn.md.config.MDConfig`): a field's ``description`` is the one place its meaning is
written, and the full template, the JSON schema and the validation messages all read it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["KINDS", "config_class", "full_template", "json_schema", "validate_file"]

KINDS = ("train", "md", "bias", "learn")


def config_class(kind: str) -> type[BaseModel]:
    """The pydantic class of a config kind: ``train``, ``md``, ``bias`` or ``learn``."""
    if kind == "train":
        from .train.config import TrainConfig

        return TrainConfig
    if kind == "md":
        from .md.config import MDConfig

        return MDConfig
    if kind == "bias":
        from .sampling.config import BiasConfig

        return BiasConfig
    if kind == "learn":
        from .learn.config import LearnConfig

        return LearnConfig
    raise ValueError(f"config kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _defaults(kind: str, family: Optional[str]) -> BaseModel:
    from .models.config import families

    if kind == "bias":
        from .sampling.config import example

        return example()
    if kind == "md":
        if family is not None:
            raise ValueError("--family is for training configs (the model section)")
        # `model` has no default (a run directory must be named); show the usual place.
        return config_class("md")(model=Path("runs/train"))
    known = families()
    if kind == "learn":
        # `train` has no default (the model and seed data must be named); show a small ensemble.
        from .train.config import TrainConfig

        train = TrainConfig(model=known[family or "bpnn"](), uncertainty={"method": "ensemble"})
        return config_class("learn")(train=train)
    if family is not None and family not in known:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(known)}")
    return config_class("train")(model=known[family or "sivqlm"]())


def _scalar(value) -> str:
    """One value as inline YAML (lists and mappings in flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True).strip()
    return text.removesuffix("\n...").strip()


def _description(config: BaseModel, name: str) -> str:
    from .models.config import ModelConfig, families

    if name == "family" and isinstance(config, ModelConfig):
        # The discriminator: its value picks the class, so it is described by the list of classes.
        return "model family: " + " | ".join(families()) + " (the other keys of this section depend on it)"
    return type(config).model_fields[name].description or ""


def _emit(config: BaseModel, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    values = config.model_dump(mode="json")
    names = sorted(type(config).model_fields, key=lambda n: n != "family")  # the discriminator first
    for name in names:
        for text in _description(config, name).splitlines():
            lines.append(f"{pad}# {text}")
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            _emit(value, indent + 2, lines)
        else:
            lines.append(f"{pad}{name}: {_scalar(values[name])}")


def full_template(kind: str = "train", family: Optional[str] = None) -> str:
    """Every field of a config with its default and its description as a YAML comment.

    ``family`` picks the model section of a training config (default sivqlm).

        >>> text = full_template("train")
        >>> "# passes over the training set" in text and "epochs: 100" in text
        True
    """
    config = _defaults(kind, family)
    lines = [f"# qdyn {kind} config: every key with its default (all optional"
             f"{'' if kind == 'train' else ' except cvs' if kind == 'bias' else ' except train' if kind == 'learn' else ' except model'}; unknown keys are rejected).",
             f"# Check a file with: qdyn validate FILE --kind {kind}"]
    _emit(config, 0, lines)
    return "\n".join(lines) + "\n"


def json_schema(kind: str = "train") -> dict:
    """The JSON schema (draft 2020-12) of a config kind."""
    return config_class(kind).model_json_schema()


def _error_line(source: str, err: dict) -> str:
    where = ".".join(str(x) for x in err["loc"]) or "config"
    return f"{source}: {where}: {err['msg']}"


def validate_file(path: str | Path, kind: str = "train") -> list[str]:
    """Problems of a YAML config file, one line each (an empty list: valid)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        return [f"{path}: cannot read: {e.strerror or e}"]
    except yaml.YAMLError as e:
        return [f"{path}: not valid YAML: {' '.join(str(e).split())}"]
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        return [f"{path}: a config is a mapping of keys to values, got {type(raw).__name__}"]
    try:
        config_class(kind).model_validate(raw)
    except ValidationError as e:
        return [_error_line(str(path), err) for err in e.errors()]
    return []
