"""Multiple-walker metadynamics on the Müller–Brown surface: W replicas depositing into one
shared bias against one walker running W times longer and against W independent walkers (the
estimate their mean), at equal total MD steps.

Same system and settings as benchmarks/muller_brown.py (one hydrogen-mass particle on
s · V_MB(x, y), Langevin at 300 K with kT = 20 MB units, CVs (x, y), σ = 0.05, w0 = 0.3 kT,
γ = 8, a hill every 150 steps per walker), W = 8 walkers started in the three minima. Both
runs go through ``run_md`` with a bias (``walkers="shared"`` vs ``"independent"``). The hill
buffers are in deposition order, so one run gives the whole convergence curve: at t steps per
walker the shared bias holds its first W · ⌊t / pace⌋ hills, each independent walker its
first ⌊t / pace⌋, the single walker (W · t steps) its first W · ⌊t / pace⌋. Error: RMS of F − F_exact over the basins (exact within 4 kT of the
minimum), after the best constant shift, in kT, against total steps W · t.

    python benchmarks/multiple_walkers.py            # 8 × 100,000 steps per run
    python benchmarks/multiple_walkers.py --small    # 8 × 10,000 (smoke run)

Writes results/multiple_walkers.{json,png} and its section of README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qdyn import enable_x64  # noqa: E402

enable_x64()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import RESULTS, machine_info, save, update_readme_section  # noqa: E402
from muller_brown import ENERGY, KT, KT_MB, SCALE, T0, XY, starts  # noqa: E402
from qdyn.md import MDOutput, MDSettings, run_md  # noqa: E402
from qdyn.sampling import muller_brown as mb  # noqa: E402
from qdyn.sampling.bias import make_bias  # noqa: E402
from qdyn.sampling.free_energy import metad_fes, rms_difference  # noqa: E402

NAME = "multiple_walkers"
WALKERS, PACE = 8, 150
MODES = ("single", "independent", "shared")


def run(mode: str, n_steps: int):
    """(bias, final states, wall seconds) of one metadynamics run: WALKERS replicas of
    ``n_steps`` ("independent", "shared") or one walker of WALKERS × n_steps ("single")."""
    replicas, steps = (1, WALKERS * n_steps) if mode == "single" else (WALKERS, n_steps)
    bias = make_bias(XY, sigma=(0.05, 0.05), height_eV=0.3 * KT, pace=PACE, bias_factor=8.0, temperature_K=T0,
                     max_hills=_hills_at(mode, n_steps), walkers="shared" if mode == "shared" else "independent")
    t = time.perf_counter()
    res = run_md(ENERGY, {}, starts(replicas), mb.system(),
                 MDSettings(ensemble="nvt-langevin", dt_fs=1.0, n_steps=steps, temperature_K=T0, replicas=replicas,
                            friction_per_fs=0.05),
                 output=MDOutput(stride=100, frames_per_block=100, progress=None), bias=bias, key=jax.random.PRNGKey(1))
    return bias, res.bias_state, time.perf_counter() - t


def _hills_at(mode: str, steps_per_walker: int) -> int:
    """Hills in one bias buffer after ``steps_per_walker`` (× WALKERS for the single walker)."""
    return (steps_per_walker // PACE) * (1 if mode == "independent" else WALKERS)


def first_hills(states, n_keep: int):
    """The bias states with only their first ``n_keep`` hills (the bias at an earlier time)."""
    keep = jnp.arange(states.hill_height.shape[-1]) < n_keep
    return states._replace(hill_height=jnp.where(keep, states.hill_height, 0.0),
                           n_hills=jnp.minimum(states.n_hills, n_keep))


def convergence(mode: str, bias, states, n_steps: int, n_points: int = 10):
    """RMS error [kT] over the basins at n_points times (total steps = WALKERS × per-walker)."""
    xs, ys, V = mb.grid(61)
    pts = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    basins = (V.ravel() - V.min()) < 4 * KT_MB
    rows = []
    for t in np.linspace(n_steps / n_points, n_steps, n_points).astype(int):
        fe = metad_fes(bias, first_hills(states, _hills_at(mode, t)), pts, region=basins)
        rows.append({"steps_per_walker": int(t), "total_steps": int(t * WALKERS),
                     "rms_kT": rms_difference(fe.F, V.ravel() * SCALE, basins) / KT})
    return rows


def plot(payload, path):
    from qdyn.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"single": f"1 walker, {WALKERS}× longer", "independent": f"{WALKERS} independent walkers (mean)",
              "shared": f"{WALKERS} walkers sharing one bias"}
    for mode, colour in zip(MODES, ("tab:gray", "tab:blue", "tab:red")):
        c = payload[mode]["curve"]
        ax.plot([r["total_steps"] for r in c], [r["rms_kT"] for r in c], "o-", color=colour, label=labels[mode])
    ax.axhline(0.2, color="k", ls=":", label="0.2 kT")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("total MD steps (all walkers)")
    ax.set_ylabel("RMS error of F over the basins [kT]")
    ax.set_title("Müller–Brown, well-tempered metadynamics")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a smoke run (10× fewer steps)")
    args = ap.parse_args()
    n_steps = 10_000 if args.small else 100_000
    load_start = os.getloadavg()
    payload = {**machine_info(), "walkers": WALKERS, "pace_steps": PACE, "steps_per_walker": n_steps,
               "small": args.small}
    for mode in MODES:
        bias, states, wall = run(mode, n_steps)
        curve = convergence(mode, bias, states, n_steps)
        payload[mode] = {"wall_s": wall, "hills": int(np.asarray(states.n_hills).sum() if mode == "independent"
                                                      else np.asarray(states.n_hills)[0]), "curve": curve}
        print(mode, f"{wall:.0f} s", [(r["total_steps"], round(r["rms_kT"], 3)) for r in curve], flush=True)
    payload["load_average_start_end"] = [list(load_start), list(os.getloadavg())]
    RESULTS.mkdir(exist_ok=True)
    name = NAME + ("_small" if args.small else "")
    save(name, payload)
    plot(payload, RESULTS / f"{name}.png")
    if not args.small:
        readme(payload)


def readme(payload):
    one, ind, sh = (payload[m]["curve"] for m in MODES)
    load = " → ".join(f"{x[0]:.1f}" for x in payload["load_average_start_end"])
    rows = [f"| {a['total_steps']:,} | {a['rms_kT']:.3f} | {b['rms_kT']:.3f} | {c['rms_kT']:.3f} |"
            for a, b, c in zip(one, ind, sh)]
    vs_one = sum(c["rms_kT"] <= a["rms_kT"] for a, c in zip(one, sh))
    vs_ind = sum(c["rms_kT"] <= b["rms_kT"] for b, c in zip(ind, sh))
    text = "\n".join([
        f"{payload['walkers']} walkers, a hill every {payload['pace_steps']} steps per walker, same seeds and starts; "
        f"RMS of F − F_exact over the basins after a constant shift. Load average: {load}. "
        f"Wall time: single {payload['single']['wall_s']:.0f} s, independent {payload['independent']['wall_s']:.0f} s, "
        f"shared {payload['shared']['wall_s']:.0f} s (a shared or single bias sums {payload['walkers']}× more hills "
        "per step).", "",
        "| total steps | 1 walker [kT] | independent walkers (mean) [kT] | shared bias [kT] |", "|---:|---:|---:|---:|",
        *rows, "",
        f"The shared bias is at least as close to the exact surface as the single walker at {vs_one} of {len(rows)} "
        f"points, and as the independent walkers' mean at {vs_ind} of {len(rows)}.", "",
        f"![multiple walkers](results/{NAME}.png)"])
    update_readme_section(NAME, "Multiple-walker metadynamics on Müller–Brown (`python benchmarks/multiple_walkers.py`)",
                          text)


if __name__ == "__main__":
    main()
