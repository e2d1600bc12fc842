"""Deployment: the exported .qdyn file in a fresh process, the ASE calculator from a run or a
file (stress against finite differences, atoms in any order, a BFGS relaxation), and qdyn as
an i-PI client driven through ASE's socket server."""

import json
import os
import subprocess
import sys
import textwrap
import uuid

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn import testing
from qdyn.cli.app import app
from qdyn.deploy import ArtefactError, load, save, template_permutation
from qdyn.md.ase_calculator import QdynCalculator
from qdyn.models import bpnn, sivqlm
from qdyn.models.base import energy_and_forces, energy_forces_stress
from qdyn.structures import water, water_dimer
from qdyn.system import System

BPNN = {"family": "bpnn", "hidden": [8], "n_radial": 4, "zetas": [1.0]}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A bpnn trained briefly on shipped B3LYP water (run directory, model, params)."""
    from qdyn.data import load_shipped
    from qdyn.train import parse_config, train

    run = tmp_path_factory.mktemp("deploy") / "run"
    cfg = parse_config({"model": BPNN, "data": {"n_train": 64, "n_val": 8, "n_test": 8}, "epochs": 12,
                        "batch_size": 16, "optim": {"learning_rate": 1e-2}})
    res = train(cfg, run, progress=False, data=load_shipped("H2O").subset(np.arange(80)))
    return run, res.model, res.params


@pytest.fixture(scope="module")
def exported(trained_run):
    run, _, _ = trained_run
    out = run.parent / "water.qdyn"
    result = CliRunner().invoke(app, ["export", "--model", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_atoms"] == "any"
    return out


def _frames(n, seed=0):
    R0 = np.asarray(water()[0])
    rng = np.random.default_rng(seed)
    return R0[None] + 0.05 * rng.standard_normal((n, *R0.shape))


def _periodic_model():
    """An untrained bpnn with a short cutoff, for periodic boxes of two waters."""
    model = bpnn.build(species=(1, 8), hidden=(8,), n_radial=4, zetas=[1.0], cutoff=3.0)
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.3)
    return model, params


def _two_waters():
    R = np.concatenate([np.asarray(water()[0]), np.asarray(water()[0]) + [2.9, 0.3, 0.2]])
    box = np.array([[7.0, 0.0, 0.0], [0.4, 6.8, 0.0], [0.2, -0.3, 7.2]]).T  # triclinic, columns
    return R, [8, 1, 1, 8, 1, 1], box


def test_exported_file_in_a_fresh_process_equals_the_run(trained_run, exported, tmp_path, write_run):
    """Energies, forces and stress from the .qdyn file, loaded in a new interpreter without the
    run directory and without qdyn's model code, equal the run's to 1e-12."""
    run, model, params = trained_run
    pmodel, pparams = _periodic_model()
    smodel = sivqlm.build("H2O", layers=2)
    sparams = testing.randomize_params(smodel.init(jax.random.PRNGKey(2)), jax.random.PRNGKey(3), scale=0.5)
    save(tmp_path / "periodic.qdyn", pmodel, pparams)
    save(tmp_path / "sivqlm.qdyn", smodel, sparams)
    (tmp_path / "water.qdyn").write_bytes(exported.read_bytes())
    frames = _frames(4)
    R2, Z2, box = _two_waters()
    hidden = run.with_name("run-hidden")
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from qdyn import enable_x64
        enable_x64()
        from qdyn.deploy import load
        R = np.array({frames.tolist()})
        water, sq = load("water.qdyn"), load("sivqlm.qdyn")
        out = {{"water": [water.energy_and_forces(r, [8, 1, 1]) for r in R],
                "batch": water.batch(R, [8, 1, 1]),
                "sivqlm": [sq.energy_and_forces(r, [8, 1, 1]) for r in R],
                "periodic": load("periodic.qdyn").energy_forces_stress({R2.tolist()}, {Z2}, {box.tolist()})}}
        out["modules"] = sorted(m for m in ("qdyn.models", "qdyn.train", "pennylane", "flax") if m in sys.modules)
        print(json.dumps(out, default=lambda a: np.asarray(a).tolist()))
    """)
    run.rename(hidden)  # the run directory is not there while the file is used
    try:
        proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    finally:
        hidden.rename(run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["modules"] == []  # neither qdyn's model code nor PennyLane/Flax was imported
    for (E, F), R in zip(got["water"], frames):
        E0, F0 = energy_and_forces(model, params, R, System.create([8, 1, 1]))
        np.testing.assert_allclose(E, float(E0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(F, np.asarray(F0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["batch"][0], [E for E, _ in got["water"]], rtol=0, atol=1e-12)
    for (E, F), R in zip(got["sivqlm"], frames):
        E0, F0 = energy_and_forces(smodel, sparams, R, System.create([8, 1, 1]))
        np.testing.assert_allclose(E, float(E0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(F, np.asarray(F0), rtol=0, atol=1e-12)
    E, F, S = got["periodic"]
    E0, F0, S0 = energy_forces_stress(pmodel, pparams, R2, System.create(Z2, box=box))
    np.testing.assert_allclose(E, float(E0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(F, np.asarray(F0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(S, np.asarray(S0), rtol=0, atol=1e-12)
    # non-trivial: the frames differ in energy, forces and stress are not zero
    assert np.ptp([E for E, _ in got["water"]]) > 1e-4 and np.abs(F).max() > 1e-3 and np.abs(S).max() > 1e-5


def test_stress_is_the_strain_derivative_of_the_energy():
    """ASE's stress from the calculator equals central differences of the energy under cell
    deformation (positions scaled with the cell), in a triclinic box; the file gives the same."""
    from ase import Atoms
    from ase.calculators.fd import calculate_numerical_stress

    model, params = _periodic_model()
    R, Z, box = _two_waters()
    atoms = Atoms(numbers=Z, positions=R, cell=box.T, pbc=True)
    atoms.calc = QdynCalculator(model, params)
    stress = atoms.get_stress()
    numeric = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(stress).max() > 1e-4  # non-trivial
    np.testing.assert_allclose(stress, numeric, rtol=0, atol=1e-8)
    assert np.isfinite(atoms.get_potential_energy())


def test_stress_from_the_file_and_the_run_agree(tmp_path, write_run):
    from ase import Atoms

    model, params = _periodic_model()
    write_run(tmp_path / "run", model, params)
    save(tmp_path / "m.qdyn", model, params)
    R, Z, box = _two_waters()
    results = []
    for calc in (QdynCalculator.from_run(tmp_path / "run"), QdynCalculator.from_file(tmp_path / "m.qdyn")):
        atoms = Atoms(numbers=Z, positions=R, cell=box.T, pbc=True, calculator=calc)
        results.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_template_permutation_assigns_each_h_to_its_own_oxygen():
    R, system = water_dimer()
    R, Z = np.asarray(R), np.asarray(system.species)
    shuffle = np.array([4, 3, 1, 5, 0, 2])  # H of molecule B first, O of B before O of A
    perm = template_permutation(Z[shuffle], R[shuffle], Z, ((1, 0), (2, 0), (3, 0), (4, 3), (5, 3), (0, 3)))
    # slot k of the template receives an atom at the template's own position k, up to the
    # symmetries (H exchange within a molecule, exchange of the molecules)
    placed = R[shuffle][perm]
    same_molecule = [set(map(tuple, np.round(placed[i:i + 3], 6))) for i in (0, 3)]
    molecules = [set(map(tuple, np.round(R[i:i + 3], 6))) for i in (0, 3)]
    assert sorted(map(sorted, same_molecule)) == sorted(map(sorted, molecules))
    with pytest.raises(Exception, match="O H H"):
        template_permutation([8, 1, 8], R[:3], [8, 1, 1], ((1, 0), (2, 0)))


@pytest.mark.parametrize("kind", ["bpnn", "sivqlm"])
def test_atoms_in_any_order_get_the_permuted_forces(kind, tmp_path):
    """A permuted Atoms gets the same energy and the permuted forces, from a descriptor model
    and from a template model (whose circuit needs O H H), live and from the file."""
    from ase import Atoms

    if kind == "bpnn":
        model = bpnn.build(species=(1, 8), hidden=(8,), n_radial=4, zetas=[1.0])
    else:
        model = sivqlm.build("H2O", layers=2)
    params = testing.randomize_params(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), scale=0.5)
    save(tmp_path / "m.qdyn", model, params)
    R = _frames(1, seed=3)[0]
    E0, F0 = energy_and_forces(model, params, R, System.create([8, 1, 1]))
    assert np.abs(np.asarray(F0)).max() > 1e-3  # non-trivial
    order = np.array([1, 0, 2])  # H O H
    for calc in (QdynCalculator(model, params), QdynCalculator.from_file(tmp_path / "m.qdyn")):
        atoms = Atoms(numbers=np.array([8, 1, 1])[order], positions=R[order], calculator=calc)
        np.testing.assert_allclose(atoms.get_potential_energy(), float(E0), rtol=0, atol=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), np.asarray(F0)[order], rtol=0, atol=1e-10)


def test_bfgs_relaxation_of_water_with_the_exported_model(exported):
    from ase import Atoms
    from ase.optimize import BFGS

    R = _frames(1, seed=5)[0]
    atoms = Atoms(numbers=[1, 8, 1], positions=R[[1, 0, 2]], calculator=QdynCalculator.from_file(exported))
    f_start = np.abs(atoms.get_forces()).max()
    opt = BFGS(atoms, logfile=None)
    assert opt.run(fmax=1e-3, steps=200)
    fmax = np.linalg.norm(atoms.get_forces(), axis=1).max()
    assert fmax < 1e-3 < f_start
    d = atoms.get_all_distances()
    assert 0.8 < d[0, 1] < 1.2 and 0.8 < d[1, 2] < 1.2  # still a water molecule: bonded O–H


def test_ipi_client_serves_md_steps_through_a_socket(exported, tmp_path):
    """qdyn serve-ipi as the i-PI client of ASE's socket server (the i-PI protocol over a UNIX
    socket): two velocity-Verlet steps, forces equal to the direct calculator's."""
    from ase import Atoms, units
    from ase.calculators.socketio import SocketIOCalculator
    from ase.md.verlet import VelocityVerlet

    atoms = Atoms(numbers=[8, 1, 1], positions=_frames(1, seed=7)[0])
    atoms.write(tmp_path / "start.xyz")
    log = open(tmp_path / "client.log", "w")

    def launch_client(atoms, properties, port=None, unixsocket=None):
        cmd = [sys.executable, "-c", "from qdyn.cli.app import main; main()", "serve-ipi", "--model", str(exported),
               "--structure", str(tmp_path / "start.xyz"), "--unix", unixsocket, "--timeout", "120"]
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})

    direct = QdynCalculator.from_file(exported)
    name = f"qdyn-test-{uuid.uuid4().hex[:8]}"
    with SocketIOCalculator(unixsocket=name, launch_client=launch_client, timeout=240) as server:
        atoms.calc = server
        dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
        forces = []
        dyn.attach(lambda: forces.append((atoms.positions.copy(), atoms.get_forces())))
        dyn.run(2)
        proc = server.server.proc
    assert proc.wait(timeout=60) == 0, (tmp_path / "client.log").read_text()[-2000:]
    assert len(forces) == 3
    for R, F in forces:
        ref = Atoms(numbers=[8, 1, 1], positions=R, calculator=direct)
        # the i-PI protocol carries Bohr and Hartree: exact up to the unit round trip
        np.testing.assert_allclose(F, ref.get_forces(), rtol=0, atol=1e-9)
    assert np.abs(forces[-1][0] - forces[0][0]).max() > 1e-5  # the atoms moved


def _ipi_script():
    """The ``i-pi`` executable next to this Python, or None where i-PI is not installed."""
    import importlib.util
    import shutil
    from pathlib import Path

    if importlib.util.find_spec("ipi") is None:
        return None
    beside = Path(sys.executable).with_name("i-pi")
    return str(beside) if beside.exists() else shutil.which("i-pi")


@pytest.mark.skipif(_ipi_script() is None, reason="i-PI is not installed (pip install ipi; in the test extras)")
def test_ipi_drives_md_with_the_exported_model(exported, tmp_path):
    """i-PI itself (examples/ipi/input.xml, three NVE steps) with ``qdyn serve-ipi`` as its
    force client: the forces and energies i-PI records equal the direct calculator's at the
    positions it records, and the atoms move."""
    import shutil
    from pathlib import Path

    from ase import Atoms

    example = Path(__file__).parents[1] / "examples" / "ipi"
    name = f"qdyn-test-{uuid.uuid4().hex[:8]}"
    xml = (example / "input.xml").read_text()
    xml = xml.replace("<address>qdyn</address>", f"<address>{name}</address>")
    xml = xml.replace("<total_steps>20</total_steps>", "<total_steps>3</total_steps>")
    (tmp_path / "input.xml").write_text(xml)
    shutil.copy(example / "init.xyz", tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(tmp_path / "ipi.log", "w") as log:
        server = subprocess.Popen([sys.executable, _ipi_script(), "input.xml"], cwd=tmp_path, stdout=log,
                                  stderr=subprocess.STDOUT, env=env)
        try:
            client = subprocess.run([sys.executable, "-c", "from qdyn.cli.app import main; main()", "serve-ipi",
                                     "--model", str(exported), "--structure", "init.xyz", "--unix", name,
                                     "--wait", "120"], cwd=tmp_path, capture_output=True, text=True,
                                    timeout=300, env=env)
            assert client.returncode == 0, client.stderr[-1000:] + (tmp_path / "ipi.log").read_text()[-1000:]
            assert server.wait(timeout=60) == 0, (tmp_path / "ipi.log").read_text()[-2000:]
        finally:
            if server.poll() is None:
                server.kill()
    import ase.io

    positions = ase.io.read(tmp_path / "water.pos_0.xyz", index=":", format="xyz")
    forces = ase.io.read(tmp_path / "water.for_0.xyz", index=":", format="xyz")
    potential = np.loadtxt(tmp_path / "water.out")[:, 3]
    assert len(positions) == len(forces) == len(potential) == 4
    direct = QdynCalculator.from_file(exported)
    for atoms, F, E in zip(positions, forces, potential):
        ref = Atoms(numbers=[8, 1, 1], positions=atoms.positions, calculator=direct)
        # i-PI's xyz trajectories hold positions to 1e-6 Å: the reference is evaluated at
        # rounded positions (the exact round trip is test_ipi_client_serves_md_steps_through_a_socket)
        np.testing.assert_allclose(F.positions, ref.get_forces(), rtol=0, atol=2e-4)
        # i-PI converts to eV with its own 8-digit constant (1 eV = 0.036749326 Ha)
        np.testing.assert_allclose(E, ref.get_potential_energy(), rtol=2e-7, atol=1e-5)
    assert np.abs(positions[-1].positions - positions[0].positions).max() > 1e-4  # the atoms moved


def test_bad_model_files_give_one_line_errors(exported, tmp_path):
    (tmp_path / "notzip.qdyn").write_text("hello")
    with pytest.raises(ArtefactError, match="not a qdyn model file"):
        load(tmp_path / "notzip.qdyn")
    with pytest.raises(ArtefactError, match="no such model file"):
        load(tmp_path / "missing.qdyn")
    import zipfile

    with zipfile.ZipFile(exported) as zf, zipfile.ZipFile(tmp_path / "bad.qdyn", "w") as out:
        for item in zf.namelist():
            data = zf.read(item)
            if item == "params.npz":
                data = data[:-8] + b"\0" * 8
            out.writestr(item, data)
    with pytest.raises(ArtefactError, match="params.npz is corrupted"):
        load(tmp_path / "bad.qdyn")
    result = CliRunner().invoke(app, ["export", "--model", str(tmp_path), "--out", str(tmp_path / "x.qdyn")])
    assert result.exit_code == 2 and "not a finished qdyn run" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x.qdyn").exists()
