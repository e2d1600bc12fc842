"""Labellers: turn a configuration (Z, R in Å) into energies [eV] and forces [eV/Å].

Two kinds ship with qdyn:

* :class:`PySCFLabeler` — HF, any DFT functional (gradients **with grid response**, so the
  forces are the exact derivative of the reported energy), MP2, CCSD and CCSD(T), and, for
  multistate data, state-averaged CASSCF and TDA-TDDFT.
* :class:`ASELabeler` — any ASE calculator (xTB through tblite, EMT, a remote code …),
  built in each worker by a picklable factory.
* :class:`TBLiteLabeler` — GFN2-xTB / GFN1-xTB through tblite, molecular or periodic, with
  every setting recorded (and rebuilt from metadata, unlike a generic ASE calculator).

Both follow the :class:`Labeler` protocol: ``label(Z, R) -> FrameResult`` and
``describe() -> dict`` (JSON metadata that identifies the level of theory; it is also what
the per-frame cache is keyed on, so two runs with equal descriptions share cached frames).

Unit conversion happens only through :mod:`qdyn.units`: coordinates go to PySCF in Bohr
converted here (PySCF's own Å→Bohr constant is CODATA 2010, qdyn's is CODATA 2018, and
forces must be the derivative with respect to *our* Å), and Hartree, Hartree/Bohr come back
through :func:`qdyn.units.convert`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, runtime_checkable

import numpy as np

from .. import elements, units
from ..validation import QdynInputError


def _require_label_extra(module: str, labeler: str) -> None:
    """PySCF and tblite are the optional ``label`` extra: say how to get them, not ImportError."""
    import importlib.util

    from ..validation import QdynInputError

    if importlib.util.find_spec(module) is None:
        raise QdynInputError(f"{labeler} needs the Python package {module!r}, which is not installed; "
                             "install qdyn with its labelling extra: pip install 'qdyn-mlff[label]'")

__all__ = ["FrameResult", "Labeler", "PySCFLabeler", "ASELabeler", "TBLiteLabeler", "labeler_from_spec"]

_HA_TO_EV = units.convert(1.0, "Hartree", "eV")
_GRAD_TO_EV_A = units.convert(1.0, "Hartree/Bohr", "eV/Angstrom")
_A_TO_BOHR = units.convert(1.0, "Angstrom", "Bohr")


@dataclass
class FrameResult:
    """The labels of one configuration.

    Attributes:
        energy: total energy [eV] (ground state / state 0 for multistate methods); NaN if
            the calculation raised.
        forces: float64 [n_atoms, 3] eV/Å, minus the gradient of ``energy``; NaN if failed.
        converged: False when any iterative solver (SCF, CC amplitudes/lambda, CASSCF,
            Davidson) stopped short, or the calculation raised.
        status: ``"ok"``, ``"not converged: <which>"`` or ``"error: <message>"``.
        energies_states: float64 [n_states] eV for multistate methods, else None.
        forces_states: float64 [n_states, n_atoms, 3] eV/Å for multistate methods, else None.
        nacs_states: float64 [n_states, n_states, n_atoms, 3] 1/Å, the nonadiabatic couplings
            ``d_ij = ⟨i|∇j⟩`` (antisymmetric in i, j; each pair's overall sign is arbitrary,
            see :mod:`qdyn.data.couplings`) when the labeller computes them, else None.
        dipole: float64 [3] e·Å, the electric dipole of the (ground-state) density and the
            nuclei about the origin of ``R``, where the method gives one consistent with its
            energy (PySCF HF/DFT/TDA ground state, tblite for molecules); else None.
    """

    energy: float
    forces: np.ndarray
    converged: bool
    status: str = "ok"
    energies_states: Optional[np.ndarray] = None
    forces_states: Optional[np.ndarray] = None
    nacs_states: Optional[np.ndarray] = None
    dipole: Optional[np.ndarray] = None

    @classmethod
    def failed(cls, n_atoms: int, message: str, *, n_states: int = 0) -> "FrameResult":
        nan_f = np.full((n_atoms, 3), np.nan)
        return cls(
            energy=float("nan"),
            forces=nan_f,
            converged=False,
            status=f"error: {message}",
            energies_states=np.full(n_states, np.nan) if n_states else None,
            forces_states=np.full((n_states, n_atoms, 3), np.nan) if n_states else None,
        )


@runtime_checkable
class Labeler(Protocol):
    """Anything that labels a configuration.

    ``label(Z, R)`` takes atomic numbers int [n_atoms] and positions float64 [n_atoms, 3] Å
    and returns a :class:`FrameResult`; ``describe()`` returns JSON-serialisable metadata
    identifying the level of theory (method, basis, functional string, code versions).
    ``n_states`` is 0 for single-state labellers.
    """

    n_states: int

    def label(self, Z: np.ndarray, R: np.ndarray) -> FrameResult: ...

    def describe(self) -> dict: ...


_SINGLE_STATE = ("HF", "DFT", "MP2", "CCSD", "CCSD(T)")
_MULTI_STATE = ("SA-CASSCF", "TDA")
_MAX_STABILITY_STEPS = 5


@dataclass(frozen=True)
class PySCFLabeler:
    """Ab initio labels from PySCF.

    Args:
        method: ``"HF"``, ``"DFT"`` (set ``xc``), ``"MP2"``, ``"CCSD"``, ``"CCSD(T)"``,
            ``"SA-CASSCF"`` (set ``ncas``, ``nelecas``, ``n_states``) or ``"TDA"``
            (TDA-TDDFT on a DFT reference; set ``xc`` and ``n_states``, counting the ground
            state).
        basis: basis-set name understood by PySCF, e.g. ``"def2-SVP"``.
        xc: exchange-correlation functional string for DFT/TDA, passed verbatim to PySCF
            (note: PySCF's ``"B3LYP"`` uses VWN-RPA, the Gaussian convention, not VWN5;
            the string is recorded in metadata so the choice is never ambiguous).
        charge: total charge [e].
        spin: 2S (number of unpaired electrons); non-zero selects UHF/UKS.
        grid_level: PySCF DFT grid level (0–9).
        grid_response: include the grid-weight derivative in DFT gradients; with it the
            forces are the exact derivative of the reported energy. Keep it on.
        conv_tol: SCF energy convergence threshold [Hartree].
        max_cycle: SCF iteration limit.
        cc_max_cycle: CCSD amplitude (and lambda) iteration limit; PySCF's default of 50
            stops short at stretched bonds.
        cc_conv_tol: CCSD energy convergence threshold [Hartree].
        ncas: CASSCF active orbitals.
        nelecas: CASSCF active electrons.
        n_states: number of states (SA-CASSCF: averaged states; TDA: ground + n_states-1
            excited states). 0 for single-state methods.
        nac: SA-CASSCF only: also compute the nonadiabatic coupling vectors between every
            pair of states (PySCF's analytic SA-CASSCF NACs, ``pyscf.nac.sacasscf``, full
            derivative coupling including the CSF term, no electron-translation factors),
            stored as ``FrameResult.nacs_states`` in 1/Å. One more CP-MCSCF response per pair.
        stability: after the SCF, test the solution for an internal instability (a lower
            solution of the same kind, e.g. a symmetry-broken closed shell) and follow it
            until stable. Where a closed-shell solution turns into a saddle (CaH2 bent
            below ~49°), TDA from it finds a negative excitation and fails; the stable
            solution continues the ground state.

    Example:
        >>> lab = PySCFLabeler(method="HF", basis="sto-3g")
        >>> res = lab.label(np.array([1, 1]), np.array([[0, 0, 0], [0, 0, 0.74]]))
        >>> bool(res.converged), res.forces.shape
        (True, (2, 3))
    """

    method: str
    basis: str
    xc: Optional[str] = None
    charge: int = 0
    spin: int = 0
    grid_level: int = 3
    grid_response: bool = True
    conv_tol: float = 1e-10
    max_cycle: int = 100
    cc_max_cycle: int = 200
    cc_conv_tol: float = 1e-9
    ncas: Optional[int] = None
    nelecas: Optional[int] = None
    n_states: int = 0
    stability: bool = False
    nac: bool = False

    def __post_init__(self):
        _require_label_extra("pyscf", "PySCFLabeler")
        m = self.method.upper()
        if m not in _SINGLE_STATE + _MULTI_STATE:
            raise QdynInputError(
                f"unknown method {self.method!r}; choose one of {_SINGLE_STATE + _MULTI_STATE} "
                "(DFT functionals go in xc=, e.g. method='DFT', xc='B3LYP')"
            )
        object.__setattr__(self, "method", m)
        if m in ("DFT", "TDA") and not self.xc:
            raise QdynInputError(f"method {m} needs a functional: xc='B3LYP', 'PBE', ...")
        if m not in ("DFT", "TDA") and self.xc:
            raise QdynInputError(f"xc={self.xc!r} given but method {m} is not DFT/TDA")
        if m == "SA-CASSCF" and (self.ncas is None or self.nelecas is None or self.n_states < 2):
            raise QdynInputError("SA-CASSCF needs ncas=, nelecas= and n_states >= 2")
        if self.nac and m != "SA-CASSCF":
            raise QdynInputError(f"nac=True needs method SA-CASSCF (analytic NACs), not {m}")
        if m == "TDA" and self.n_states < 2:
            raise QdynInputError("TDA needs n_states >= 2 (ground state + excited states)")
        if m in _SINGLE_STATE and self.n_states:
            raise QdynInputError(f"n_states is for SA-CASSCF/TDA, not {m}")
        if m in ("MP2", "CCSD", "CCSD(T)", "SA-CASSCF", "TDA") and self.spin != 0:
            # PySCF's analytic gradients for these are closed-shell (restricted) only.
            raise QdynInputError(f"{m} gradients in qdyn are closed-shell only (spin=0)")

    def describe(self) -> dict:
        import pyscf

        d = {"code": "pyscf", "code_version": pyscf.__version__, "labeler": "PySCFLabeler"}
        d.update(dataclasses.asdict(self))
        if self.method in ("DFT", "TDA"):
            d["functional_note"] = (
                "xc string passed verbatim to pyscf.dft; PySCF's 'B3LYP' uses VWN-RPA (VWN3), "
                "as Gaussian does"
            )
            if self.method == "TDA":
                # PySCF's TDDFT gradients have no grid-response term (pyscf/grad/tdrks.py:
                # "TODO: to include the response of grids"): excited-state forces match the
                # finite differences of their energies only up to the grid error.
                d["excited_state_grid_response"] = False
                d["tda_roots"] = "all (PySCF drops roots below 1e-3 Ha by default); a negative one is flagged"
        else:
            for k in ("grid_level", "grid_response"):
                d.pop(k)
        if self.method not in ("CCSD", "CCSD(T)"):
            d.pop("cc_max_cycle")
            d.pop("cc_conv_tol")
        if self.method != "SA-CASSCF":
            d.pop("ncas")
            d.pop("nelecas")
        else:
            d["spin_states"] = "singlets (PySCF fix_spin_(ss=0))"
        if not self.stability:
            d.pop("stability")  # absent = off: descriptions (cache keys) made before it existed hold
        if self.nac:
            d["nac_convention"] = ("d_ij = <i|grad j> [1/Angstrom], PySCF SA-CASSCF analytic NACs with the CSF term "
                                   "(use_etfs=False); the sign of each pair is arbitrary per frame")
        else:
            d.pop("nac")
        return d

    # -- the calculation ------------------------------------------------------------------
    def _mol(self, Z, R):
        from pyscf import gto

        mol = gto.Mole()
        mol.atom = [(elements.symbol(int(z)), tuple(r)) for z, r in zip(Z, np.asarray(R) * _A_TO_BOHR)]
        mol.unit = "Bohr"
        mol.basis = self.basis
        mol.charge = self.charge
        mol.spin = self.spin
        mol.verbose = 0
        mol.build()
        # PySCF's memory limit (lib.param.MAX_MEMORY, 4000 MB unless PYSCF_MAX_MEMORY says
        # otherwise) counts the whole process. In a process that already holds that much (a
        # notebook or test worker with compiled JAX programs) every solver saw no room left and
        # the CCSD gradient failed ("cannot reshape array of size 0"): the limit is what the
        # calculation may add to what is resident now.
        from pyscf import lib

        mol.max_memory = lib.current_memory()[0] + lib.param.MAX_MEMORY
        return mol

    def _scf(self, mol):
        from pyscf import dft, scf

        if self.method in ("DFT", "TDA"):
            mf = dft.RKS(mol) if self.spin == 0 else dft.UKS(mol)
            mf.xc = self.xc
            mf.grids.level = self.grid_level
        else:
            mf = scf.RHF(mol) if self.spin == 0 else scf.UHF(mol)
        mf.conv_tol = self.conv_tol
        mf.max_cycle = self.max_cycle
        mf.verbose = 0
        mf.kernel()
        if self.stability:
            for _ in range(_MAX_STABILITY_STEPS):
                mo, _, stable, _ = mf.stability(return_status=True)
                if stable:
                    break
                mf.kernel(mf.make_rdm1(mo, mf.mo_occ))
            else:
                mf.converged = False  # still unstable: reported as not converged, never used silently
        return mf

    def validate(self, Z, R) -> None:
        """Build one frame's molecule and check the functional without computing anything:
        an unknown basis or functional, or a charge and spin that do not fit the electrons,
        fail here, before any frame is labelled. Raises :class:`QdynInputError`."""
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PySCF's advice to install basis-set-exchange
                self._mol(np.asarray(Z), np.asarray(R, dtype=float))
        except Exception as exc:
            raise QdynInputError(f"labeller {self.method}/{self.basis} (charge {self.charge}, spin {self.spin}): "
                                 f"{' '.join(str(exc).split())}") from None
        if self.method in ("DFT", "TDA"):
            from pyscf.dft import libxc

            try:
                libxc.parse_xc(self.xc)
            except (KeyError, ValueError) as exc:
                raise QdynInputError(f"labeller: functional xc={self.xc!r} is not one PySCF knows ({exc}); "
                                     "for GFN2-xTB use --method GFN2-xTB") from None

    def label(self, Z, R) -> FrameResult:
        """Energy [eV] and forces [eV/Å] of one configuration (Z int [n], R [n, 3] Å)."""
        Z = np.asarray(Z)
        R = np.asarray(R, dtype=float)
        try:
            return self._label(Z, R)
        except Exception as exc:  # recorded per frame, never dropped: see module docstring
            return FrameResult.failed(len(Z), f"{type(exc).__name__}: {exc}", n_states=self.n_states)

    def _label(self, Z, R) -> FrameResult:
        mol = self._mol(Z, R)
        mf = self._scf(mol)
        problems = [] if mf.converged else ["SCF"]
        states_e = states_f = None
        m = self.method
        if m in ("HF", "DFT"):
            e = mf.e_tot
            g = mf.nuc_grad_method()
            if m == "DFT":
                g.grid_response = self.grid_response
            grad = g.kernel()
        elif m == "MP2":
            from pyscf import mp

            pt = mp.MP2(mf)
            pt.verbose = 0
            pt.kernel()
            e = pt.e_tot
            grad = pt.nuc_grad_method().kernel()
        elif m in ("CCSD", "CCSD(T)"):
            from pyscf import cc

            mycc = cc.CCSD(mf)
            mycc.verbose = 0
            mycc.max_cycle = self.cc_max_cycle
            mycc.conv_tol = self.cc_conv_tol
            mycc.kernel()
            if not mycc.converged:
                problems.append("CCSD amplitudes")
            if m == "CCSD":
                e = mycc.e_tot
                gobj = mycc.nuc_grad_method()
            else:
                from pyscf.grad import ccsd_t as ccsd_t_grad

                e = mycc.e_tot + mycc.ccsd_t()
                gobj = ccsd_t_grad.Gradients(mycc)
            # The gradient solves the lambda equations with the same iteration limit.
            mycc.max_cycle = self.cc_max_cycle
            grad = gobj.kernel()
            if getattr(mycc, "converged_lambda", True) is False:
                problems.append("CCSD lambda")
        elif m == "SA-CASSCF":
            mc = self._sacasscf(mf)
            if not mc.converged:
                problems.append("SA-CASSCF")
            states_e = np.asarray(mc.e_states, dtype=float)
            gobj = mc.nuc_grad_method()
            states_g = np.stack([gobj.kernel(state=i) for i in range(self.n_states)])
            states_e, states_f = states_e * _HA_TO_EV, -states_g * _GRAD_TO_EV_A
            nacs = self._sacasscf_nacs(mc, len(Z)) if self.nac else None
            return self._result(states_e[0], states_f[0], problems, states_e, states_f, nacs)
        elif m == "TDA":
            from pyscf import tddft

            td = tddft.TDA(mf)
            td.nstates = self.n_states - 1
            td.verbose = 0
            # Davidson's default tolerance (1e-5) makes excited energies too noisy for
            # forces to match their finite differences.
            td.conv_tol = max(self.conv_tol, 1e-9)
            # PySCF keeps only roots above 1e-3 Ha (27 meV) by default: next to an S0/S1
            # crossing the real S1 is lower, is dropped, and S2 is returned as S1 without a
            # warning (seen on CaH2 at 50°). Keep every root; a negative one means the
            # reference is unstable, and the frame is flagged.
            td.positive_eig_threshold = -np.inf
            td.kernel()
            if not np.all(td.converged):
                problems.append("TDA Davidson")
            if np.min(td.e) < 0:
                problems.append("negative TDA excitation (unstable reference; see stability=)")
            g0 = mf.nuc_grad_method()
            g0.grid_response = self.grid_response
            grads = [g0.kernel()]
            gtd = td.nuc_grad_method()
            grads += [gtd.kernel(state=i) for i in range(1, self.n_states)]
            states_e = np.concatenate([[mf.e_tot], mf.e_tot + np.asarray(td.e)]) * _HA_TO_EV
            states_f = -np.stack(grads) * _GRAD_TO_EV_A
            res = self._result(states_e[0], states_f[0], problems, states_e, states_f)
            res.dipole = _scf_dipole(mf)  # the TDA ground state is the SCF
            return res
        else:  # pragma: no cover - guarded in __post_init__
            raise AssertionError(m)
        res = self._result(e * _HA_TO_EV, -np.asarray(grad) * _GRAD_TO_EV_A, problems, None, None)
        if m in ("HF", "DFT"):  # the SCF density is this energy's density; MP2/CC need relaxed ones
            res.dipole = _scf_dipole(mf)
        return res

    def _sacasscf(self, mf):
        """The converged (or stopped) state-averaged CASSCF object on top of ``mf``."""
        from pyscf import mcscf

        mc = mcscf.CASSCF(mf, self.ncas, self.nelecas)
        # singlets only: without the spin penalty the CI solver returns the lowest roots of any
        # spin, and a triplet (no coupling to S0) is stored as "S1" (seen on CaH2 near 50°)
        mc.fix_spin_(ss=0)
        mc = mc.state_average_([1.0 / self.n_states] * self.n_states)
        mc.verbose = 0
        # PySCF's default (1e-7 Ha) leaves enough noise to spoil finite-difference checks.
        mc.conv_tol = self.conv_tol
        mc.kernel()
        return mc

    def natural_occupations(self, Z, R) -> np.ndarray:
        """SA-CASSCF only: each state's active-space natural occupation numbers, float64
        [n_states, ncas], largest first (energies only, no gradients). Occupations near 2 or
        0 mark an orbital the active space does not need; a state that needs an orbital
        outside it shows no such sign here (compare energies with a larger space)."""
        if self.method != "SA-CASSCF":
            raise QdynInputError(f"natural_occupations needs method SA-CASSCF, not {self.method}")
        mc = self._sacasscf(self._scf(self._mol(np.asarray(Z), np.asarray(R, dtype=float))))
        dms = mc.fcisolver.states_make_rdm1(mc.ci, mc.ncas, mc.nelecas)
        return np.stack([np.sort(np.linalg.eigvalsh(d))[::-1] for d in dms])

    def _sacasscf_nacs(self, mc, n_atoms: int) -> np.ndarray:
        """d_ij = ⟨i|∇j⟩ [n_states, n_states, n_atoms, 3] 1/Å from PySCF's SA-CASSCF NACs."""
        nac_method = mc.nac_method()
        nac_method.verbose = 0
        d = np.zeros((self.n_states, self.n_states, n_atoms, 3))
        for i in range(self.n_states):
            for j in range(i + 1, self.n_states):
                # PySCF's state=(ket, bra) returns <bra|d ket/dR> in 1/Bohr
                d[i, j] = nac_method.kernel(state=(j, i), use_etfs=False, mult_ediff=False) * _A_TO_BOHR
                d[j, i] = -d[i, j]
        return d

    def hessian(self, Z, R) -> np.ndarray:
        """Analytic Hessian [3N, 3N] eV/Å² (HF and DFT), order (atom, xyz); for sampling.

        Raises if the SCF does not converge (a Hessian of an unconverged SCF is garbage).
        """
        if self.method not in ("HF", "DFT"):
            raise QdynInputError(f"analytic Hessians are available for HF/DFT, not {self.method}; "
                             "use qdyn.data.samplers.finite_difference_hessian")
        Z = np.asarray(Z)
        mf = self._scf(self._mol(Z, np.asarray(R, dtype=float)))
        if not mf.converged:
            raise RuntimeError("hessian: SCF did not converge")
        h = np.asarray(mf.Hessian().kernel())  # [N, N, 3, 3] Hartree/Bohr²
        n = len(Z)
        return units.convert(h.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n), "Hartree/Bohr^2", "eV/Angstrom^2")

    @staticmethod
    def _result(e, f, problems, states_e, states_f, nacs=None) -> FrameResult:
        return FrameResult(
            energy=float(e),
            forces=np.asarray(f, dtype=float),
            converged=not problems,
            status="ok" if not problems else "not converged: " + ", ".join(problems),
            energies_states=states_e,
            forces_states=states_f,
            nacs_states=nacs,
        )


def _scf_dipole(mf) -> np.ndarray:
    """Dipole [3] e·Å of a converged PySCF SCF (electrons and nuclei, origin at R = 0)."""
    mu_au = mf.dip_moment(unit="AU", verbose=0)  # e·Bohr
    return np.asarray(units.convert(np.asarray(mu_au, float), "Bohr", "Angstrom"), dtype=float)


@dataclass(frozen=True)
class ASELabeler:
    """Labels from any ASE calculator (ASE's units are eV and Å, so no conversion is needed).

    Args:
        calculator_factory: a **picklable** zero-argument callable returning a fresh ASE
            calculator (a module-level function or ``functools.partial(EMT)``); it is called
            once per worker process, so calculators never cross process boundaries.
        name: a label recorded in metadata (e.g. ``"GFN2-xTB (tblite)"``).
        parameters: JSON-serialisable description of the calculator settings, recorded in
            metadata and part of the cache key.

    Example:
        >>> from functools import partial
        >>> from ase.calculators.emt import EMT
        >>> lab = ASELabeler(calculator_factory=partial(EMT), name="EMT")
    """

    calculator_factory: Callable[[], object]
    name: str
    parameters: dict = field(default_factory=dict)
    n_states: int = 0

    def describe(self) -> dict:
        import ase

        fac = self.calculator_factory
        target = getattr(fac, "func", fac)
        return {
            "code": "ase",
            "code_version": ase.__version__,
            "labeler": "ASELabeler",
            "method": self.name,
            "calculator": f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}",
            "parameters": self.parameters,
        }

    def label(self, Z, R) -> FrameResult:
        """Energy [eV] and forces [eV/Å] from the calculator (Z int [n], R [n, 3] Å)."""
        from ase import Atoms

        Z = np.asarray(Z)
        try:
            calc = _ase_calculator(self)
            atoms = Atoms(numbers=Z, positions=np.asarray(R, dtype=float))
            atoms.calc = calc
            e = float(atoms.get_potential_energy())
            f = np.asarray(atoms.get_forces(), dtype=float)
        except Exception as exc:
            return FrameResult.failed(len(Z), f"{type(exc).__name__}: {exc}")
        return FrameResult(energy=e, forces=f, converged=True)


# One calculator per labeller per process: building one (e.g. loading xTB parameters) can be
# costly, and worker processes each build their own. Keyed by the description, not id():
# unpickled factories are new objects, and ids of dead objects are reused.
_CALCULATORS: dict = {}


def _ase_calculator(labeler: "ASELabeler"):
    key = json.dumps(labeler.describe(), sort_keys=True, default=str)
    if key not in _CALCULATORS:
        _CALCULATORS[key] = labeler.calculator_factory()
    return _CALCULATORS[key]


@dataclass(frozen=True)
class TBLiteLabeler:
    """Semi-empirical tight-binding labels (GFN2-xTB, GFN1-xTB) from tblite.

    Cheap enough for water clusters of 20 molecules (≈ 0.03–0.06 s per energy + forces on
    one core) and, with ``cell``, periodic boxes (≈ 5 s for 32 waters: the lattice sums
    dominate). A fresh calculator is built for every frame, so no SCF guess is carried over
    from the previous frame and a label never depends on the order frames were computed in
    (the per-frame cache relies on that).

    tblite parallelises with OpenMP: the labelling pool pins ``OMP_NUM_THREADS=1`` in its
    workers; run ``workers=0`` jobs with ``OMP_NUM_THREADS=1`` set before Python starts.

    Args:
        method: ``"GFN2-xTB"`` or ``"GFN1-xTB"``.
        accuracy: tblite's accuracy multiplier (smaller is tighter; 1.0 is the default).
        electronic_temperature: Fermi smearing temperature [K].
        max_iterations: SCF iteration limit; a frame that does not converge is recorded as
            failed (tblite raises).
        charge: total charge [e].
        multiplicity: 2S + 1.
        cell: lattice vectors as **columns** [3, 3] Å (qdyn's ``System.box`` convention),
            fully periodic; None for an isolated molecule or cluster.

    Example:
        >>> lab = TBLiteLabeler()
        >>> res = lab.label(np.array([8, 1, 1]), np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
        >>> bool(res.converged), res.forces.shape
        (True, (3, 3))
    """

    method: str = "GFN2-xTB"
    accuracy: float = 1.0
    electronic_temperature: float = 300.0
    max_iterations: int = 250
    charge: int = 0
    multiplicity: int = 1
    cell: Optional[tuple] = None
    n_states: int = 0
    stability: bool = False

    def __post_init__(self):
        _require_label_extra("tblite", "TBLiteLabeler")
        if self.method not in ("GFN2-xTB", "GFN1-xTB"):
            raise QdynInputError(f"TBLiteLabeler method must be 'GFN2-xTB' or 'GFN1-xTB', got {self.method!r}")
        if self.accuracy <= 0 or self.electronic_temperature <= 0 or self.max_iterations < 1:
            raise QdynInputError("TBLiteLabeler: accuracy and electronic_temperature must be > 0, max_iterations >= 1")
        if self.cell is not None:
            c = np.asarray(self.cell, dtype=float)
            if c.shape != (3, 3) or not np.all(np.isfinite(c)) or abs(np.linalg.det(c)) < 1e-6:
                raise QdynInputError(f"TBLiteLabeler: cell must be a finite, non-singular [3, 3] matrix "
                                 f"(lattice vectors as columns, Å), got {self.cell!r}")
            # Frozen dataclass: keep a hashable, JSON-friendly nested tuple.
            object.__setattr__(self, "cell", tuple(tuple(float(x) for x in row) for row in c))
        if self.n_states:
            raise QdynInputError("TBLiteLabeler is single-state (n_states=0)")

    def describe(self) -> dict:
        from importlib.metadata import version

        d = {"code": "tblite", "code_version": version("tblite"), "labeler": "TBLiteLabeler"}
        d.update(dataclasses.asdict(self))
        d["cell"] = None if self.cell is None else [list(r) for r in self.cell]
        d["periodic"] = self.cell is not None
        d["electronic_temperature_unit"] = "K"
        d["threads"] = 1
        return d

    def label(self, Z, R) -> FrameResult:
        """Energy [eV] and forces [eV/Å] of one configuration (Z int [n], R [n, 3] Å)."""
        from ase import Atoms
        from tblite.ase import TBLite

        Z = np.asarray(Z)
        try:
            if self.cell is None:
                atoms = Atoms(numbers=Z, positions=np.asarray(R, dtype=float))
            else:
                # ASE stores lattice vectors as rows, qdyn as columns.
                atoms = Atoms(numbers=Z, positions=np.asarray(R, dtype=float), cell=np.asarray(self.cell).T, pbc=True)
            atoms.calc = TBLite(method=self.method, accuracy=self.accuracy,
                                electronic_temperature=self.electronic_temperature,
                                max_iterations=self.max_iterations, charge=self.charge,
                                multiplicity=self.multiplicity, verbosity=0)
            e = float(atoms.get_potential_energy())  # ASE calculators speak eV and Å
            f = np.asarray(atoms.get_forces(), dtype=float)
            # tblite's dipole, e·Å through ASE; a periodic cell has no well-defined one
            dipole = None if self.cell is not None else np.asarray(atoms.calc.results["dipole"], dtype=float)
        except Exception as exc:  # tblite raises on SCF failure: a failed frame, recorded
            res = FrameResult.failed(len(Z), f"{type(exc).__name__}: {exc}")
            if "converge" in str(exc).lower():
                # a genuine non-convergence (kept in the cache), not a transient error
                res.status = f"not converged: SCF ({' '.join(str(exc).split())})"
            return res
        return FrameResult(energy=e, forces=f, converged=True, dipole=dipole)

    def validate(self, Z, R) -> None:
        """Charge and multiplicity must fit the electrons (tblite's valence count has the same
        parity as the total one). Raises :class:`QdynInputError`."""
        n_el = int(np.sum(Z)) - int(self.charge)
        if n_el < 0 or (n_el - (self.multiplicity - 1)) % 2:
            raise QdynInputError(f"labeller {self.method}: {n_el} electrons (charge {self.charge}) cannot have "
                                 f"multiplicity {self.multiplicity}")


def labeler_from_spec(spec: dict):
    """Rebuild a :class:`PySCFLabeler` or :class:`TBLiteLabeler` from the ``describe()``
    dict stored in metadata.

    ASE labellers cannot be rebuilt from metadata (their factory is code); they raise.
    """
    kinds = {"PySCFLabeler": PySCFLabeler, "TBLiteLabeler": TBLiteLabeler}
    cls = kinds.get(spec.get("labeler"))
    if cls is None:
        raise QdynInputError(f"cannot rebuild labeler {spec.get('labeler')!r} from metadata (only {', '.join(kinds)})")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in spec.items() if k in names})
