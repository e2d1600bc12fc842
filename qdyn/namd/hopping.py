"""The hop of a surface-hopping trajectory: which surface (if any) the fewest-switches
probabilities pick, the velocity rescaling that conserves total energy, and what a
frustrated hop does to the velocity. Pure functions of arrays; :func:`qdyn.namd.fssh.fssh`
composes them (its module docstring describes the frustrated-hop policies).

Units: V in Å/fs, masses in amu, energies in eV; ``units.AMU_A2_FS2_EV`` turns ½mV² into eV.

References:
    S. Hammes-Schiffer and J. C. Tully, J. Chem. Phys. 101, 4657 (1994) (velocity rescaling).
    A. W. Jasper and D. G. Truhlar, Chem. Phys. Lett. 369, 60 (2003) (the ∇V criterion).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import units

FRUSTRATED_POLICIES = ("keep", "reverse", "gradV")


class Hop(NamedTuple):
    """The outcome of one step's hop decision (scalars; ``V`` has the shape of the velocities)."""

    active: jax.Array  # the active state after the step
    V: jax.Array  # velocities after rescaling (or the frustrated-hop policy) [Å/fs]
    attempted: jax.Array  # the random number picked a target
    accepted: jax.Array
    frustrated: jax.Array  # attempted but not enough kinetic energy along d


def choose_target(key, g, active):
    """(attempted, target): one uniform number against the cumulative hop probabilities
    ``g`` [n] (normalised when they sum above one); target = active when none is picked."""
    total = jnp.sum(g)
    g = jnp.where(total > 1.0, g / jnp.where(total > 1.0, total, 1.0), g)
    xi = jax.random.uniform(key, (), dtype=g.dtype)
    cum = jnp.cumsum(g)
    attempt = xi < cum[-1]
    return attempt, jnp.where(attempt, jnp.argmax(xi < cum), active).astype(jnp.int32)


def rescale_velocity(V, d, dE, m, attempt):
    """Energy-conserving rescaling along the coupling vector d: ``V − γ d / m`` with the
    smaller root γ of ``½Σm|V − γd/m|² = ½Σm|V|² − ΔE``.

    Returns:
        ``(V_new, allowed, a, b)``: allowed = attempted and the root exists; a, b the
        quadratic's coefficients (``a γ² − b γ + ΔE = 0``, eV per γ², eV per γ).
    """
    a = 0.5 * units.AMU_A2_FS2_EV * jnp.sum(d * d / m)
    b = units.AMU_A2_FS2_EV * jnp.sum(V * d)
    disc = b * b - 4.0 * a * dE
    allowed = attempt & (disc >= 0) & (a > 0)
    # the smaller root, written without dividing by a
    sb = jnp.where(b >= 0, 1.0, -1.0)
    den = b + sb * jnp.sqrt(jnp.maximum(disc, 0.0))
    gamma = jnp.where(allowed & (den != 0), 2.0 * dE / jnp.where(den != 0, den, 1.0), 0.0)
    return V - gamma * d / m, allowed, a, b


def reverse_along(V, d, m, a, b):
    """V with its mass-weighted component along d reversed (γ = b/a: kinetic energy kept)."""
    g_rev = jnp.where(a > 0, b / jnp.where(a > 0, a, 1.0), 0.0)
    return V - g_rev * d / m


def hop(key, g, active, V, el, m, *, frustrated: str = "keep") -> Hop:
    """One step's hop decision and its velocity change.

    Args:
        key: PRNG key.  g: [n] hop probabilities of the step.  active: the active state.
        V: velocities [Å/fs].  el: :class:`~qdyn.namd.electronic.Electronic` at the
            step's end.  m: masses [amu], broadcast against V.
        frustrated: ``"keep"``, ``"reverse"`` or ``"gradV"``.
    """
    attempt, target = choose_target(key, g, active)
    d = el.nac[active, target]
    V_new, allowed, a, b = rescale_velocity(V, d, el.energy[target] - el.energy[active], m, attempt)
    is_frustrated = attempt & ~allowed
    if frustrated != "keep":
        reverse = is_frustrated
        if frustrated == "gradV":  # reverse only if the target surface would turn it back anyway
            reverse = reverse & (jnp.sum(-el.grad[target] * d) * jnp.sum(V * d) < 0)
        V_new = jnp.where(reverse, reverse_along(V, d, m, a, b), V_new)
    return Hop(jnp.where(allowed, target, active), V_new, attempt, allowed, is_frustrated)
