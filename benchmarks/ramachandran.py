"""Alanine dipeptide Ramachandran free-energy map from hybrid-model MD (issue 21, item 2).

The hybrid model (per-atom re-uploading circuit ∥ MLP, the organics benchmark's settings, a
``core_radii: auto`` wall) is trained on the shipped GFN2-xTB alanine dipeptide sets
(``alanine_dipeptide``: MD and normal modes at C7eq; ``alanine_dipeptide_rama``: umbrella
windows over the whole (φ, ψ) plane), energies and forces with the forces weighted up;
``--refine-rounds`` then adds metadynamics frames where the model's force error is largest.
Then W walkers of Langevin MD at 300 K share one well-tempered metadynamics bias on the
backbone dihedrals (φ, ψ) (``qdyn.sampling``: ``cv.dihedral``, ``make_bias(walkers="shared")``
through ``run_md``), all walkers started from the GFN2-xTB minimum. The free energy is
``F = −γ/(γ−1) V_bias`` on a grid, reported per basin (C7eq, C5, αR, C7ax, αL: the lowest F
within 40° of each textbook position, kJ/mol relative to the global minimum) for the whole run
and for its first half: the difference says how converged the map is. Bonds are checked on
the stored frames (the organics benchmark's test: no bond past 1.5 × its starting length).

Usage: nice -n 15 python benchmarks/ramachandran.py [--minutes 12] [--walkers 8] [--refine-rounds 2] [--small]
Writes benchmarks/results/ramachandran.{json,png} and its section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from bench_organics import DESCRIPTOR, MODELS, bond_pairs, errors  # noqa: E402
from qdyn import md, units  # noqa: E402
from qdyn.data import Dataset, label_dataset, load_shipped, read, write  # noqa: E402
from qdyn.data.dihedral_grid import restrained_minimum  # noqa: E402
from qdyn.data.labelers import labeler_from_spec  # noqa: E402
from qdyn.plotting import pyplot, save_figure  # noqa: E402
from qdyn.sampling import cv  # noqa: E402
from qdyn.sampling.bias import make_bias  # noqa: E402
from qdyn.sampling.free_energy import metad_fes  # noqa: E402
from qdyn.system import System  # noqa: E402
from qdyn.train import parse_config, train  # noqa: E402
from qdyn.train.trainer import load_run, predict  # noqa: E402

NAME = "ramachandran"
T_K = 300.0
DT_FS = 0.5
# textbook basin positions (φ, ψ) in degrees, gas-phase alanine dipeptide
BASINS = {"C7eq": (-83, 73), "C5": (-155, 165), "αR": (-70, -40), "C7ax": (73, -60), "αL": (60, 40)}
BASIN_WINDOW_DEG = 40.0
# C7eq-centred MD and normal modes, and the whole (φ, ψ) plane (a restrained grid): without the
# second the bias drives walkers where the model has never been
DATA = ("alanine_dipeptide", "alanine_dipeptide_rama")
KJ_PER_MOL_PER_EV = units.convert(1.0, "eV", "kJ/mol")


# -- the model -----------------------------------------------------------------------------
def training_data(names) -> Dataset:
    """The shipped sets named, one dataset (``extras['set']``: which set each frame came from)."""
    parts = [load_shipped(n) for n in names]
    for k, p in enumerate(parts):
        p.extras = {"set": np.full(p.n_frames, k)}
    return Dataset.concatenate(parts)


def split(ds: Dataset):
    """(training pool, held-out test frames): one seeded split, the same in every round."""
    perm = np.random.default_rng(0).permutation(ds.n_frames)
    n_test = max(20, ds.n_frames // 8)
    return ds.subset(perm[n_test:]), ds.subset(perm[:n_test])


def fit(run_dir: Path, pool: Dataset, *, epochs: int, hidden: list, log, init_params=None):
    """The hybrid trained on ``pool`` (a finished run in ``run_dir`` is reused); ``init_params``
    warm-starts it (refinement rounds: no classical-only pre-training stage then)."""
    if not (run_dir / "model.json").exists():
        n_val = max(5, pool.n_frames // 10)
        cfg = parse_config({
            "model": {**DESCRIPTOR, **MODELS["hybrid (circuit)"], "core_radii": "auto", "hidden": hidden},
            "data": {"path": "unused", "n_train": pool.n_frames - n_val, "n_val": n_val, "n_test": 0, "split_seed": 0},
            # forces carry 3N numbers per frame against one energy: weighted up so MD sees the right gradients
            "loss": {"energy_weight": 1.0, "force_weight": 10.0},
            "optim": {"learning_rate": 5e-3 if init_params is None else 2e-3, "schedule": "cosine",
                      "final_lr_fraction": 0.02},
            "epochs": epochs, "batch_size": 16, "seed": 0, "staged": init_params is None,
            "pretrain_epochs": max(1, epochs // 5), "checkpoint_every": max(1, epochs // 4),
        })
        t0 = time.perf_counter()
        train(cfg, run_dir, data=pool, progress=False, init_params=init_params)
        log(f"trained the hybrid on {pool.n_frames} frames, {epochs} epochs, in {time.perf_counter() - t0:.0f} s")
    model, params, _ = load_run(run_dir)
    return model, params


def epochs_label(args) -> str:
    """The training schedule in words: first fit, then the warm-started refinement rounds."""
    if not args.refine_rounds:
        return str(args.epochs)
    return f"{args.epochs} + {args.refine_rounds} × {args.refine_epochs}"


def test_errors(model, params, test: Dataset, data_names, log) -> dict:
    """Test errors in all and on each shipped set's share of the test frames."""
    err = errors(model, params, test)
    log(f"hybrid on alanine dipeptide: E {err['energy_mae_meV_per_atom']:.2f} meV/atom, "
        f"F {err['force_mae_meV_per_A']:.0f} meV/Å on {test.n_frames} test frames")
    per_set = {}
    for k, name in enumerate(data_names):
        mine = np.flatnonzero(test.extras["set"] == k)
        if len(mine):
            per_set[name] = {"n_test": int(len(mine)), **errors(model, params, test.subset(mine))}
    return {"test": err, "test_per_set": per_set}


# -- backbone dihedrals ---------------------------------------------------------------------
def backbone_dihedrals(Z, R) -> dict:
    """Atom indices of φ (C−N−Cα−C) and ψ (N−Cα−C−N) from the covalent bond graph of
    Ace-Ala-NMe: Cα is the carbon bonded to an N and to a carbonyl carbon (a C bonded to O)."""
    pairs = bond_pairs(Z, R)
    nb = {i: set() for i in range(len(Z))}
    for i, j in pairs:
        nb[int(i)].add(int(j))
        nb[int(j)].add(int(i))
    carbonyl = {i for i in nb if Z[i] == 6 and any(Z[j] == 8 for j in nb[i])}
    for ca in (i for i in nb if Z[i] == 6 and i not in carbonyl):
        ns = [j for j in nb[ca] if Z[j] == 7]
        cs = [j for j in nb[ca] if j in carbonyl]
        if len(ns) == 1 and len(cs) == 1:
            n1, c2 = ns[0], cs[0]
            c0 = next(j for j in nb[n1] if j in carbonyl)
            n2 = next(j for j in nb[c2] if Z[j] == 7)
            return {"phi": [c0, n1, ca, c2], "psi": [n1, ca, c2, n2]}
    raise ValueError("no alanine backbone (C(=O)-N-Cα-C(=O)-N) in this structure")


def basin_table(F_grid: np.ndarray, axis_deg: np.ndarray) -> dict:
    """Lowest F [kJ/mol] within BASIN_WINDOW_DEG of each basin and where it lies."""
    P, S = np.meshgrid(axis_deg, axis_deg, indexing="ij")
    out = {}
    for name, (p0, s0) in BASINS.items():
        dp = (P - p0 + 180) % 360 - 180
        ds = (S - s0 + 180) % 360 - 180
        near = np.hypot(dp, ds) <= BASIN_WINDOW_DEG
        k = np.argmin(np.where(near, F_grid, np.inf))
        out[name] = {"F_kJ_per_mol": float(F_grid.flat[k]), "phi_deg": float(P.flat[k]), "psi_deg": float(S.flat[k])}
    return out


def first_hills(states, n_keep: int):
    """The bias with only its first ``n_keep`` hills (the bias halfway through the run)."""
    keep = jnp.arange(states.hill_height.shape[-1]) < n_keep
    return states._replace(hill_height=jnp.where(keep, states.hill_height, 0.0),
                           n_hills=jnp.minimum(states.n_hills, n_keep))


# -- metadynamics ---------------------------------------------------------------------------
def metadynamics(model, params, Z, R0, idx, *, walkers: int, steps: int, pace: int, height_kJ: float,
                 sigma_rad: float, bias_factor: float, seed: int, log):
    cvs = cv.stack([lambda R, box: cv.dihedral(R, *idx["phi"], box),
                    lambda R, box: cv.dihedral(R, *idx["psi"], box)])
    height = height_kJ / KJ_PER_MOL_PER_EV
    bias = make_bias(cvs, periods=(2 * np.pi, 2 * np.pi), sigma=(sigma_rad, sigma_rad), height_eV=height,
                     pace=pace, bias_factor=bias_factor, temperature_K=T_K,
                     max_hills=(steps // pace) * walkers, walkers="shared")
    stride = pace
    settings = md.MDSettings(ensemble="nvt-langevin", dt_fs=DT_FS, n_steps=steps, temperature_K=T_K,
                             replicas=walkers, remove_rotation=True, friction_per_fs=0.01)

    def progress(p):
        log(f"  metadynamics: {p['step']}/{p['n_steps']} steps per walker, {p['time_ps']:.1f} ps, "
            f"T {p['temperature_K']:.0f} K, {p['ns_per_day']:.2f} ns/day")

    res = md.run_md(md.model_energy_fn(model.apply), params, R0, System.create([int(z) for z in Z]), settings,
                    output=md.MDOutput(stride=stride, frames_per_block=max(1, 4000 // stride),
                                       store_replicas=walkers, progress=progress, progress_every_s=60.0),
                    bias=bias, key=jax.random.PRNGKey(seed))
    return bias, res


def bond_check(Z, R0, X, t_ps) -> dict:
    """Largest stretch of every starting bond over the frames X [F, W, n, 3] (times t_ps [F]),
    the walkers that broke one, when each did and which bond (atom indices) went first."""
    pairs = bond_pairs(Z, R0)
    L0 = np.linalg.norm(R0[pairs[:, 0]] - R0[pairs[:, 1]], axis=-1)
    L = np.linalg.norm(X[..., pairs[:, 0], :] - X[..., pairs[:, 1], :], axis=-1)
    stretch = L / L0  # [F, W, bonds]
    broken = stretch > 1.5
    breaks = []
    for w in range(X.shape[1]):
        if broken[:, w].any():
            f = int(np.argmax(broken[:, w].any(-1)))
            b = int(np.argmax(stretch[f, w]))
            breaks.append({"walker": w, "t_ps": float(t_ps[f]), "atoms": [int(a) for a in pairs[b]],
                           "Z": [int(Z[a]) for a in pairs[b]]})
    first = min(breaks, key=lambda b: b["t_ps"]) if breaks else None
    return {"max_bond_stretch": float(stretch.max()), "min_bond_ratio": float(stretch.min()),
            "walkers_with_broken_bond": len(breaks), "breaks": breaks,
            "first_break_ps": first["t_ps"] if first else None,
            "first_broken_bond": first["Z"] if first else None}


def xtb_basin_energies(Z, R0, idx, basins, model, params) -> dict:
    """GFN2-xTB relaxed energies at each basin's (φ, ψ) (a stiff restraint holds the dihedrals),
    and the model's energy at the same geometries, both in kJ/mol relative to their lowest basin.
    Energies of one structure each, not free energies: no entropy, no zero-point motion."""
    lab = labeler_from_spec(load_shipped("alanine_dipeptide").metadata["labeler"])
    system = System.create([int(z) for z in Z])
    rows = {}
    for name, b in basins.items():
        target = np.radians([b["phi_deg"], b["psi_deg"]])
        R, e, reached = restrained_minimum(lab, Z, R0, dihedrals=[idx["phi"], idx["psi"]], target_rad=target)
        e_model = float(model.apply(params, jnp.asarray(R), system))
        # released: where GFN2-xTB itself goes from there (a basin that is no xTB minimum empties)
        _, e_free, free = restrained_minimum(lab, Z, R, dihedrals=[idx["phi"], idx["psi"]], target_rad=target,
                                             k_eV_per_rad2=0.0)
        rows[name] = {"E_xtb_eV": e, "E_model_eV": e_model, "reached_deg": np.degrees(reached).round(1).tolist(),
                      "E_xtb_released_eV": e_free, "released_deg": np.degrees(free).round(1).tolist()}
    # each relative to its own lowest restrained structure: the xTB and model columns compare
    # one set of geometries; a released energy below 0 found a lower minimum than any of them
    e0 = min(r["E_xtb_eV"] for r in rows.values())
    m0 = min(r["E_model_eV"] for r in rows.values())
    for r in rows.values():
        r["dE_xtb_kJ_per_mol"] = (r["E_xtb_eV"] - e0) * KJ_PER_MOL_PER_EV
        r["dE_model_kJ_per_mol"] = (r["E_model_eV"] - m0) * KJ_PER_MOL_PER_EV
        r["dE_xtb_released_kJ_per_mol"] = (r["E_xtb_released_eV"] - e0) * KJ_PER_MOL_PER_EV
    return rows


# -- refinement: where the biased walkers go, labelled with GFN2-xTB -----------------------
LABEL_STRETCH_LIMIT = 1.8  # a frame with a bond past this × its length is a broken molecule: not labelled


def candidate_frames(Z, R0, X) -> np.ndarray:
    """Every stored frame [k, n, 3] of every walker up to its first broken bond (that frame
    included, it shows the model's wrong turn), none stretched past LABEL_STRETCH_LIMIT."""
    pairs = bond_pairs(Z, R0)
    L0 = np.linalg.norm(R0[pairs[:, 0]] - R0[pairs[:, 1]], axis=-1)
    stretch = (np.linalg.norm(X[..., pairs[:, 0], :] - X[..., pairs[:, 1], :], axis=-1) / L0).max(-1)  # [F, W]
    out = []
    for w in range(X.shape[1]):
        broken = np.flatnonzero(stretch[:, w] > 1.5)
        end = broken[0] + 1 if len(broken) else len(X)
        out.append(X[np.flatnonzero(stretch[:end, w] < LABEL_STRETCH_LIMIT), w])
    return np.concatenate(out)


def label_frames(Z, X) -> Dataset:
    """GFN2-xTB labels (the shipped sets' labeller and settings) of frames X [k, n, 3]."""
    lab = labeler_from_spec(load_shipped("alanine_dipeptide").metadata["labeler"])
    configs = Dataset(R=np.asarray(X, float), Z=np.broadcast_to(np.asarray(Z), X.shape[:2]).copy(),
                      source="ramachandran refinement")
    return label_dataset(configs, lab, workers=0).converged_only()


def refine(model, params, pool: Dataset, run_dir: Path, Z, R0, idx, args, kw: dict, log):
    """Rounds of: a metadynamics run with the current model, its walkers' frames labelled with
    GFN2-xTB (~15 ms each, so labelling all of them is cheap and the true error, not an
    uncertainty estimate, picks the frames), the ``--refine-frames`` with the largest force
    error added to the pool, a warm-started retraining. Each round's frames and model are kept
    in ``run_dir``'s sibling ``<name>_refine_RR`` (a finished round is reused)."""
    rounds = []
    for r in range(args.refine_rounds):
        rdir = run_dir.parent / f"{run_dir.name}_refine_{r:02d}"
        rdir.mkdir(parents=True, exist_ok=True)
        frames_path, info_path = rdir / "frames.npz", rdir / "round.json"
        if not frames_path.exists():
            _, res = metadynamics(model, params, Z, R0, idx, steps=args.refine_steps, seed=100 + r, **kw)
            X = np.asarray(res.position)
            bonds = bond_check(Z, R0, X, np.asarray(res.time_fs) / 1000)
            cand = label_frames(Z, candidate_frames(Z, R0, X))
            _, F = predict(model, params, cand)
            worst = np.abs(F - cand.F).max(axis=(1, 2))
            pick = np.sort(np.argsort(worst)[::-1][: args.refine_frames])
            write(cand.subset(pick), frames_path)
            info = {"round": r, "walkers_with_broken_bond": bonds["walkers_with_broken_bond"],
                    "first_break_ps": bonds["first_break_ps"], "max_bond_stretch": bonds["max_bond_stretch"],
                    "candidates": int(cand.n_frames), "added": int(len(pick)),
                    "candidate_force_mae_meV_per_A": float(np.mean(np.abs(F - cand.F)) * 1e3),
                    "added_max_force_error_eV_per_A": [float(worst[pick].min()), float(worst[pick].max())]}
            info_path.write_text(json.dumps(info, indent=1))
        info = json.loads(info_path.read_text())
        log(f"refinement round {r}: {info['walkers_with_broken_bond']} walker(s) broke a bond, "
            f"{info['candidates']} frames labelled (force MAE {info['candidate_force_mae_meV_per_A']:.0f} meV/Å), "
            f"{info['added']} added")
        pool = Dataset.concatenate([pool, read(frames_path)])
        model, params = fit(rdir / "hybrid", pool, epochs=args.refine_epochs, hidden=args.hidden, log=log,
                            init_params=params)
        rounds.append(info)
    return model, params, pool, rounds


# -- plot and README ------------------------------------------------------------------------
def plot(path: Path, axis_deg, F_full, F_half, cvs_deg, basins) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    levels = np.arange(0, 41, 4.0)
    for ax, F, title in ((axes[0], F_full, "whole run"), (axes[1], F_half, "first half")):
        cs = ax.contourf(axis_deg, axis_deg, np.minimum(F, levels[-1]).T, levels=levels, cmap="viridis")
        ax.contour(axis_deg, axis_deg, np.minimum(F, levels[-1]).T, levels=levels, colors="k", linewidths=0.3)
        ax.set_title(f"F(φ, ψ) [kJ/mol], {title}")
        ax.set_xlabel("φ [°]")
        ax.set_ylabel("ψ [°]")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-180, 180)
        for name, b in basins.items():
            ax.plot(b["phi_deg"], b["psi_deg"], "r+", ms=8)
            ax.annotate(name, (b["phi_deg"], b["psi_deg"]), color="w", fontsize=8, xytext=(3, 3),
                        textcoords="offset points")
    axes[0].plot(cvs_deg[..., 0].ravel(), cvs_deg[..., 1].ravel(), ",", color="w", alpha=0.15)
    fig.colorbar(cs, ax=axes, shrink=0.9)
    save_figure(fig, path)


def readme_text(p: dict) -> str:
    m, r = p["model"], p["run"]
    per_set = "; ".join(f"{k}: {v['energy_mae_meV_per_atom']:.2f} meV/atom, {v['force_mae_meV_per_A']:.0f} meV/Å "
                        f"({v['n_test']} frames)" for k, v in m.get("test_per_set", {}).items())
    lines = [
        f"Alanine dipeptide (22 atoms), hybrid model trained on the shipped GFN2-xTB sets "
        f"{', '.join('`' + d + '`' for d in m.get('data', ['alanine_dipeptide']))} ({m['n_train']} frames, "
        f"{m['epochs']} epochs, hidden {m.get('hidden')}, force weight {m['force_weight']}, core wall `auto`): test MAE "
        f"{m['test']['energy_mae_meV_per_atom']:.2f} meV/atom, {m['test']['force_mae_meV_per_A']:.0f} meV/Å "
        f"({m['n_test']} frames" + (f"; {per_set}" if per_set else "") + f"). Well-tempered metadynamics on (φ, ψ) at "
        f"{T_K:.0f} K: {r['walkers']} walkers sharing "
        f"one bias, {r['ps_per_walker']:.1f} ps each ({r['ps_total']:.0f} ps in all, dt {DT_FS} fs), hills "
        f"{r['height_kJ']} kJ/mol, σ {r['sigma_deg']:.0f}°, every {r['pace']} steps per walker, γ = "
        f"{r['bias_factor']:.0f}; {r['wall_s'] / 60:.1f} min wall ({r['steps_per_s']:.0f} steps/s per walker).", ""]
    if m.get("refinement"):
        before = m["before_refinement"]["test"]
        lines += [f"Refinement ({len(m['refinement'])} rounds before the run above): each round a metadynamics run "
                  f"of {p['refine']['steps']} steps per walker with the current model, its walkers' frames labelled "
                  f"with GFN2-xTB, the {p['refine']['frames']} with the largest force error added, "
                  f"{p['refine']['epochs']} warm-started epochs. Walkers that broke a bond, round by round: "
                  + ", ".join(str(x["walkers_with_broken_bond"]) for x in m["refinement"])
                  + "; force MAE on each round's frames: "
                  + ", ".join(f"{x['candidate_force_mae_meV_per_A']:.0f}" for x in m["refinement"])
                  + f" meV/Å. Test MAE before refinement {before['energy_mae_meV_per_atom']:.2f} meV/atom, "
                  f"{before['force_mae_meV_per_A']:.0f} meV/Å.", ""]
    ref = p.get("relaxed_energies", {})
    lines += ["| basin | φ, ψ [°] | F, whole run [kJ/mol] | F, first half [kJ/mol] | ΔE GFN2-xTB relaxed [kJ/mol] "
              "| ΔE model, same geometry [kJ/mol] | GFN2-xTB released: φ, ψ [°], ΔE [kJ/mol] |",
              "|---|---|---|---|---|---|---|"]
    for name, b in p["basins"].items():
        h = p["basins_first_half"][name]
        e = ref.get(name)
        cols = (f"{e['dE_xtb_kJ_per_mol']:.1f} | {e['dE_model_kJ_per_mol']:.1f} | {e['released_deg'][0]:.0f}, "
                f"{e['released_deg'][1]:.0f}, {e['dE_xtb_released_kJ_per_mol']:.1f}") if e else "– | – | –"
        lines.append(f"| {name} | {b['phi_deg']:.0f}, {b['psi_deg']:.0f} | {b['F_kJ_per_mol']:.1f} | "
                     f"{h['F_kJ_per_mol']:.1f} | {cols} |")
    c, b = p["convergence"], p["bonds"]
    if b["walkers_with_broken_bond"]:
        first = min(b["breaks"], key=lambda x: x["t_ps"]) if b.get("breaks") else None
        lines += ["", f"**Not a valid free-energy map:** {b['walkers_with_broken_bond']} of {r['walkers']} walkers broke "
                  f"a bond, the first after {b['first_break_ps']:.2f} ps"
                  + (f" (atoms {first['atoms']}, atomic numbers {first['Z']})" if first else "")
                  + ", so the bias filled the wells of broken molecules."]
    lines += ["", f"Convergence: whole run vs first half, RMS {c['rms_kJ_per_mol']:.1f} kJ/mol over the grid points "
              f"below {c['below_kJ_per_mol']:.0f} kJ/mol (after the best constant shift). Bonds: largest stretch "
              f"{b['max_bond_stretch']:.2f} × the starting length, {b['walkers_with_broken_bond']} walker(s) with a "
              f"bond past 1.5 ×. ΔE columns: one GFN2-xTB structure per basin, relaxed with (φ, ψ) held at the "
              f"map's minimum (stiff restraint), and the model's energy of that same structure, each relative to its "
              f"lowest basin; “released”: the same structure relaxed by GFN2-xTB without the restraint (where xTB's own "
              f"nearest minimum lies, on the same energy scale). These are energies of single structures, not free "
              f"energies (no entropy, no vibration): F and ΔE need not agree, but the ΔE pair measures the "
              f"model's conformer energies directly. "
              f"{p['machine']['cores']} cores, load average {p['load_average']} at the start.", "",
              f"![Ramachandran](results/{NAME}.png)"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=list(DATA), help="shipped GFN2-xTB sets trained on")
    ap.add_argument("--epochs", type=int, default=60, help="training epochs of the hybrid")
    ap.add_argument("--hidden", type=int, nargs="+", default=[16, 16], help="widths of the descriptor MLP")
    ap.add_argument("--walkers", type=int, default=8, help="metadynamics walkers sharing one bias")
    ap.add_argument("--minutes", type=float, default=12.0, help="wall-clock budget of the metadynamics [min]; "
                    "the steps per walker follow from a short timing run")
    ap.add_argument("--steps", type=int, default=None, help="steps per walker (overrides --minutes)")
    ap.add_argument("--pace", type=int, default=250, help="steps between hills per walker")
    ap.add_argument("--height-kj", type=float, default=1.2, help="initial hill height [kJ/mol]")
    ap.add_argument("--sigma-deg", type=float, default=20.0, help="hill width on φ and ψ [°]")
    ap.add_argument("--bias-factor", type=float, default=10.0, help="well-tempered γ")
    ap.add_argument("--model-run", type=Path, default=None, help="training run directory (reused when finished)")
    ap.add_argument("--refine-rounds", type=int, default=0, help="rounds of metadynamics frames labelled with "
                    "GFN2-xTB and added where the model's force error is largest, before the final run")
    ap.add_argument("--refine-steps", type=int, default=8000, help="steps per walker of a refinement run")
    ap.add_argument("--refine-frames", type=int, default=48, help="frames added per refinement round")
    ap.add_argument("--refine-epochs", type=int, default=20, help="warm-started epochs per refinement round")
    ap.add_argument("--small", action="store_true", help="a tiny run, for checking the script")
    args = ap.parse_args()
    if args.small:
        args.epochs, args.walkers, args.steps, args.pace = 2, 2, 500, 50
        args.refine_steps, args.refine_epochs, args.refine_frames = 500, 1, 8
    load_avg = round(os.getloadavg()[0], 2)
    log = lambda s: print(f"{time.strftime('%H:%M:%S')} {s}", flush=True)  # noqa: E731
    run_dir = args.model_run or Path(tempfile.mkdtemp(prefix="qdyn-ala-")) / "hybrid"
    pool, test = split(training_data(args.data))
    model, params = fit(run_dir, pool, epochs=args.epochs, hidden=args.hidden, log=log)
    model_info = {"data": list(args.data), "n_train": pool.n_frames - max(5, pool.n_frames // 10),
                  "n_val": max(5, pool.n_frames // 10), "n_test": test.n_frames, "epochs": epochs_label(args),
                  "hidden": args.hidden, "force_weight": 10.0, "core_radii": "auto",
                  "before_refinement": test_errors(model, params, test, args.data, log)}

    ref = load_shipped("alanine_dipeptide").metadata["sampling"]["reference"][0]
    Z, R0 = np.asarray(ref["Z"]), np.asarray(ref["R_minimum"])
    idx = backbone_dihedrals(Z, R0)
    phi0 = float(np.degrees(cv.dihedral(jnp.asarray(R0), *idx["phi"])))
    psi0 = float(np.degrees(cv.dihedral(jnp.asarray(R0), *idx["psi"])))
    log(f"φ atoms {idx['phi']}, ψ atoms {idx['psi']}; start at φ {phi0:.0f}°, ψ {psi0:.0f}°")

    kw = dict(walkers=args.walkers, pace=args.pace, height_kJ=args.height_kj, sigma_rad=np.radians(args.sigma_deg),
              bias_factor=args.bias_factor, log=log)
    model, params, pool, rounds = refine(model, params, pool, run_dir, Z, R0, idx, args, kw, log)
    model_info.update(test_errors(model, params, test, args.data, log), refinement=rounds,
                      n_train=pool.n_frames - max(5, pool.n_frames // 10), n_val=max(5, pool.n_frames // 10))
    steps = args.steps
    if steps is None:  # time a short run (it also compiles), then fill the budget
        probe = 4000
        _, res = metadynamics(model, params, Z, R0, idx, steps=probe, seed=99, **kw)
        rate = float(res.timings["steps_per_s"])
        steps = max(probe, int(args.minutes * 60 * rate) // 4000 * 4000)
        log(f"probe: {rate:.0f} steps/s per walker ({args.walkers} walkers) -> {steps} steps per walker")
    t0 = time.perf_counter()
    bias, res = metadynamics(model, params, Z, R0, idx, steps=steps, seed=0, **kw)
    wall = time.perf_counter() - t0

    axis = np.linspace(-180.0, 180.0, 73)
    P, S = np.meshgrid(np.radians(axis), np.radians(axis), indexing="ij")
    pts = np.stack([P.ravel(), S.ravel()], -1)
    n_hills = int(np.asarray(res.bias_state.n_hills)[0])
    F_full = metad_fes(bias, res.bias_state, pts).F.reshape(P.shape) * KJ_PER_MOL_PER_EV
    F_half = metad_fes(bias, first_hills(res.bias_state, n_hills // 2), pts).F.reshape(P.shape) * KJ_PER_MOL_PER_EV
    below = 25.0
    sel = F_full < below
    diff = (F_half - F_full)[sel]
    rms = float(np.sqrt(np.mean((diff - diff.mean()) ** 2)))
    basins = basin_table(F_full, axis)
    basins_half = basin_table(F_half, axis)
    X = np.asarray(res.position)
    bonds = bond_check(Z, R0, X, np.asarray(res.time_fs) / 1000)
    log(f"bonds: {bonds['walkers_with_broken_bond']} walker(s) broke one; largest stretch "
        f"{bonds['max_bond_stretch']:.2f}")
    reference = xtb_basin_energies(Z, R0, idx, basins, model, params)
    log("relaxed basin energies (xTB, model) [kJ/mol]: " + ", ".join(
        f"{k} {r['dE_xtb_kJ_per_mol']:.1f}/{r['dE_model_kJ_per_mol']:.1f}" for k, r in reference.items()))
    cvs_deg = np.degrees(np.asarray(res.cv))
    T = np.asarray(res.temperature)
    payload = {
        "model": model_info, "refine": {"rounds": args.refine_rounds, "steps": args.refine_steps,
                                        "frames": args.refine_frames, "epochs": args.refine_epochs},
        "atoms": idx, "start_deg": {"phi": phi0, "psi": psi0},
        "run": {"walkers": args.walkers, "steps_per_walker": steps, "ps_per_walker": steps * DT_FS / 1000,
                "ps_total": steps * DT_FS / 1000 * args.walkers, "pace": args.pace, "height_kJ": args.height_kj,
                "sigma_deg": args.sigma_deg, "bias_factor": args.bias_factor, "hills": n_hills, "wall_s": wall,
                "steps_per_s": float(res.timings["steps_per_s"]), "mean_temperature_K": float(T[len(T) // 2:].mean())},
        "basins": basins, "basins_first_half": basins_half, "relaxed_energies": reference,
        "convergence": {"rms_kJ_per_mol": rms, "below_kJ_per_mol": below, "grid_points": int(sel.sum())},
        "bonds": bonds, "grid_deg": axis.tolist(), "F_kJ_per_mol": F_full.tolist(),
        "load_average": load_avg, **machine_info(),
    }
    name = NAME + ("_small" if args.small else "")
    save(name, payload)
    plot(RESULTS / f"{name}.png", axis, F_full, F_half, cvs_deg, basins)
    text = readme_text(payload)
    print(text)
    if not args.small:
        update_readme_section(NAME, "### Alanine dipeptide Ramachandran map (`python benchmarks/ramachandran.py`)", text)


if __name__ == "__main__":
    main()
