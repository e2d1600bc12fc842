import json

import numpy as np
import pytest
from typer.testing import CliRunner

from qdyn.cli.app import app


def test_info():
    res = CliRunner().invoke(app, ["info"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["x64"] is True


@pytest.mark.slow
def test_quickstart_small(tmp_path):
    res = CliRunner().invoke(app, ["quickstart", "--small", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "report.json").read_text())
    si, gen = report["models"]["siVQLM"], report["models"]["generic"]
    assert si["max_energy_change_under_O3_eV"] < 1e-10
    assert gen["max_energy_change_under_O3_eV"] > 1e-3
    assert si["checks"]["force_fd_error"] < 1e-6
    assert (tmp_path / "invariance_bend_scan.png").stat().st_size > 10_000
    # forces better than predicting zero (mean |F| of the data: 869 meV/Å). The small run's energies
    # are not better than the data's spread (MAE 77.5 meV on 8 test frames vs a 53 meV mean
    # deviation): 64 frames and 80 epochs of a 3-layer circuit fit forces first.
    test = report["training"]["test"]
    assert np.isfinite(test["energy_mae_meV"]) and test["force_mae_meV_per_A"] < 869.0, test
    assert json.loads((tmp_path / "train" / "metrics.json").read_text())["test"] == test
    assert (tmp_path / "train" / "parity_test.png").exists()
    md = report["training"]["md"]
    assert len(md["harmonic_cm-1"]) == 3 and (tmp_path / "md" / "spectrum.png").exists()
