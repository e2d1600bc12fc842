"""Packaging and config tooling: declared dependencies, version, caches, help, config tools."""

import ast
import importlib.metadata
import json
import re
import sys
import tomllib
from pathlib import Path

import jax
import pytest
import typer
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

import qdyn
from qdyn.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(include_extras=True):
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    if include_extras:
        reqs += [Requirement(r) for extra in PROJECT["optional-dependencies"].values() for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != canonicalize_name(PROJECT["name"])]


def _imported_top_level(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_of_qdyn_is_declared():
    third_party = _imported_top_level(ROOT / "qdyn") - set(sys.stdlib_module_names) - {"qdyn"}
    assert {"jax", "h5py", "scipy", "pyscf"} <= third_party  # the scan sees lazy imports too
    providers = importlib.metadata.packages_distributions()
    declared = {canonicalize_name(r.name) for r in _requirements()}
    undeclared = {m for m in third_party
                  if not {canonicalize_name(d) for d in providers.get(m, [m])} & declared}
    assert not undeclared, f"imported by qdyn but not in pyproject.toml: {sorted(undeclared)}"


def test_runtime_dependencies_are_ranges_that_exclude_the_bad_jax():
    reqs = {canonicalize_name(r.name): r.specifier for r in _requirements(include_extras=False)}
    assert not [n for n, s in reqs.items() if any(spec.operator == "==" for spec in s)]
    for name in ("jax", "jaxlib"):
        assert not reqs[name].contains("0.10.2")
        assert reqs[name].contains("0.10.1") and reqs[name].contains("0.11.0")  # a newer release is kept
    # the labellers are an extra, not a core requirement
    assert "pyscf" not in reqs and "tblite" not in reqs
    label = {canonicalize_name(Requirement(r).name) for r in PROJECT["optional-dependencies"]["label"]}
    assert {"pyscf", "tblite"} <= label


def test_constraints_are_within_the_declared_ranges():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name in pins:
            assert req.specifier.contains(pins[name]), f"constraints.txt {name}=={pins[name]} violates {req}"
    assert pins["jax"] == "0.10.1"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-c constraints.txt" in ci


def test_distribution_name_license_and_version():
    assert PROJECT["name"] == "qdyn-mlff" and "qdyn-mlff" in (ROOT / "README.md").read_text()
    assert PROJECT["license"]["text"] == "Apache-2.0"
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"qdyn {qdyn.__version__}"


def test_compilation_cache_stays_off_on_cpu_and_caches_are_separate(tmp_path, monkeypatch):
    from qdyn.cache import compilation_cache_dir, label_cache_dir
    from qdyn.data.label_run import default_cache_dir
    from qdyn.precision import enable_compilation_cache

    monkeypatch.setenv("QDYN_CACHE_DIR", str(tmp_path))
    assert label_cache_dir() == default_cache_dir() == tmp_path / "labels"
    assert compilation_cache_dir() == tmp_path / "jax"
    assert jax.default_backend() == "cpu"
    before = jax.config.jax_compilation_cache_dir
    assert enable_compilation_cache() is None  # CPU: off, nothing configured, nothing created
    assert jax.config.jax_compilation_cache_dir == before and not (tmp_path / "jax").exists()
    # asked for explicitly, it still works (and is what GPU/TPU get by default)
    try:
        assert enable_compilation_cache(on_cpu=True) == str(tmp_path / "jax") and (tmp_path / "jax").is_dir()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_qdyn_imports_only_what_it_uses():
    """qdyn._jax_md: importing qdyn's MD, models and trainer leaves out jax_md's rigid-body
    examples and NequIP (11 s of import), and a user's own ``import jax_md`` still reaches every
    module. qdyn.quantum._pennylane: PennyLane (3-5 s) is imported when a QNode needs it;
    scipy.stats (1 s) when a calibration measure does."""
    import subprocess

    code = ("import sys, qdyn.md, qdyn.models, qdyn.train, qdyn.descriptors.neighbors; "
            "print(sorted(m for m in ('jax_md.rigid_body', 'jax_md.nn', 'jax_md.energy', 'pennylane', "
            "'scipy.stats') "
            "if m in sys.modules)); "
            "import jax_md; from jax_md import energy; print(callable(energy.lennard_jones_pair), "
            "callable(jax_md.minimize.fire_descent), 'jax_md.rigid_body' in sys.modules); "
            "print(hasattr(jax_md, 'no_such_module')); "
            "from qdyn.quantum.circuit import qml; print(qml.Rot.__name__, 'pennylane' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:4] == ["[]", "True True False", "False", "Rot True"]


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a sub-command group
            yield from _commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


def test_every_option_has_help_and_units_survive_in_help():
    click_app = typer.main.get_command(app)
    missing = [f"qdyn {' '.join(path)} {p.opts[0]}" for path, cmd in _commands(click_app)
               for p in cmd.params if not getattr(p, "help", None)]
    assert not missing, f"options without help: {missing}"
    res = CliRunner().invoke(app, ["md", "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert "[fs]" in res.output and "[K]" in res.output and "[bar]" in res.output


@pytest.mark.parametrize("kind,family", [("train", None), ("train", "bpnn"), ("train", "hybrid"),
                                         ("train", "multistate"), ("train", "generic"), ("train", "custom"),
                                         ("md", None), ("bias", None)])
def test_full_template_describes_every_field_and_validates(tmp_path, kind, family):
    from qdyn.config_tools import config_class, full_template

    text = full_template(kind, family)
    # every key line is preceded by its description (a comment line)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*[a-z_A-Z]+:", line):
            assert lines[i - 1].lstrip().startswith("# ") and len(lines[i - 1].strip()) > 3, line
    # the full template is the defaults: it parses back to the default config
    parsed = config_class(kind).model_validate(yaml.safe_load(text))
    if kind == "train":
        assert parsed.model.family == (family or "sivqlm")
    path = tmp_path / "cfg.yaml"
    args = ["template", "--full", "--kind", kind, "--out", str(path)] + (["--family", family] if family else [])
    assert CliRunner().invoke(app, args).exit_code == 0
    res = CliRunner().invoke(app, ["validate", str(path), "--kind", kind])
    assert res.exit_code == 0 and res.output.strip() == "ok", res.output


def test_validate_reports_one_line_per_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 0\nmodel: {family: sivqlm, layerz: 3}\nloss: {force_weight: -1}\n")
    res = CliRunner().invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{bad}: ") for line in lines)
    assert any("epochs" in line for line in lines) and any("layerz" in line for line in lines)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    res = CliRunner().invoke(app, ["validate", str(tmp_path / "list.yaml")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "mapping" in res.output
    res = CliRunner().invoke(app, ["validate", str(tmp_path / "absent.yaml")])
    assert res.exit_code == 2 and "absent.yaml" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("kind", ["train", "md", "bias"])
def test_schema_is_a_valid_json_schema_that_accepts_the_template(kind):
    jsonschema = pytest.importorskip("jsonschema")
    from qdyn.config_tools import full_template

    res = CliRunner().invoke(app, ["schema", "--kind", kind])
    assert res.exit_code == 0
    schema = json.loads(res.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(yaml.safe_load(full_template(kind)))
    # non-trivial: the schema rejects what the config rejects
    wrong = {"train": {"epochs": 0}, "md": {"model": "runs/x", "dt_fs": -1},
             "bias": {"cvs": [{"kind": "torsion", "atoms": [0, 1]}]}}[kind]
    assert not validator.is_valid(wrong)
