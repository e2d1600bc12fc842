"""Training constraints (qdyn.train.constraints): the probe configurations are what they claim,
the terms enter the training loss, and they act (a few gradient steps on them change the fit);
the old net-force penalty is a warned no-op."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from qdyn.data import load_shipped
from qdyn.models import build_model
from qdyn.train import parse_config
from qdyn.train.batches import make_batch
from qdyn.train.constraints import (ConstraintsConfig, DissociationConstraint, EnergyOrderConstraint,
                                    RepulsiveWallConstraint, dissociation_probes, make_constraint_loss, order_probes,
                                    wall_probes, with_constraints)
from qdyn.train.losses import build_loss
from qdyn.train.trainer import normalize_params
from qdyn.validation import QdynInputError

FRAGMENTS = [[0, 1, 2], [3, 4, 5]]


@pytest.fixture(scope="module")
def data():
    return load_shipped("water_dimer").subset(np.arange(40)), load_shipped("H2O").subset(np.arange(40))


def _intra(R, idx):
    sub = R[idx]
    return np.linalg.norm(sub[:, None] - sub[None], axis=-1)


def test_dissociation_probes_are_separated_monomers_with_summed_energies(data):
    dimer, mono = data
    c = DissociationConstraint(fragments=FRAGMENTS, fragment_data=["shipped:H2O"] * 2, separation=15.0, n_probes=8)
    p = dissociation_probes(c, dimer.Z, [mono, mono], seed=0)
    centroids = [p.R[:, idx].mean(1) for idx in FRAGMENTS]
    np.testing.assert_allclose(np.linalg.norm(centroids[1] - centroids[0], axis=-1), 15.0, rtol=1e-12)
    # each fragment is a rigidly moved monomer frame, and the target is the sum of the two frames' energies
    internal = np.array([[_intra(p.R[k], idx) for idx in FRAGMENTS] for k in range(8)])
    library = np.array([_intra(mono.R[f], [0, 1, 2]) for f in range(mono.n_frames)])
    matches = [[int(np.argmin(np.abs(library - internal[k, j]).sum((1, 2)))) for j in range(2)] for k in range(8)]
    for k, (a, b) in enumerate(matches):
        np.testing.assert_allclose(internal[k, 0], library[a], atol=1e-12)
        np.testing.assert_allclose(p.target[k], mono.E[a] + mono.E[b], rtol=1e-14)
    with pytest.raises(QdynInputError, match="fragment 1"):
        dissociation_probes(c.model_copy(update={"fragments": [[0, 1, 2], [4, 3, 5]]}), dimer.Z, [mono, mono], seed=0)


def test_wall_probes_compress_a_pair_rigidly_and_direction_is_dR_dr(data):
    dimer, _ = data
    c = RepulsiveWallConstraint(pair="O-O", below=2.3, r_min=1.6, n_probes=6)
    p = wall_probes(c, dimer, seed=0)
    r_oo = np.linalg.norm(p.R[:, 3] - p.R[:, 0], axis=-1)
    assert np.all((r_oo >= 1.6) & (r_oo <= 2.3)) and np.ptp(r_oo) > 0.1
    for k in range(len(p.R)):
        h = 1e-3
        moved = p.R[k] + h * p.direction[k]
        np.testing.assert_allclose(np.linalg.norm(moved[3] - moved[0]) - r_oo[k], h, rtol=1e-9)
        for idx in FRAGMENTS:  # each water moves as a whole
            np.testing.assert_allclose(_intra(moved, idx), _intra(p.R[k], idx), atol=1e-12)
    with pytest.raises(QdynInputError, match="pair"):
        wall_probes(c.model_copy(update={"pair": "O-Xx"}), dimer, seed=0)


def test_order_pairs_come_from_the_groups_or_from_the_labels(data):
    dimer, mono = data
    p = order_probes(EnergyOrderConstraint(data="x", groups=[[5, 2, 9], [0, 3]]), dimer, dimer.Z)
    frames = sorted({5, 2, 9, 0, 3})
    np.testing.assert_allclose(p.R, dimer.R[frames])
    as_frames = {(frames[a], frames[b]) for a, b in p.pairs}
    assert as_frames == {(5, 2), (5, 9), (2, 9), (0, 3)}  # every pair within a group, lower first
    p = order_probes(EnergyOrderConstraint(data="x", frames=list(range(10)), min_gap=0.02), dimer, dimer.Z)
    E = dimer.E
    expected = {(i, j) for i in range(10) for j in range(10) if E[j] - E[i] >= 0.02}  # lower first
    assert 0 < len(expected) < 45  # some pairs are near-degenerate and left free
    used = sorted({i for pair in expected for i in pair})
    np.testing.assert_allclose(p.R, dimer.R[used])
    assert {(used[a], used[b]) for a, b in p.pairs} == expected
    with pytest.raises(QdynInputError, match="out of range"):
        order_probes(EnergyOrderConstraint(data="x", groups=[[0, 99]]), dimer, dimer.Z)
    with pytest.raises(QdynInputError, match="other atoms"):
        order_probes(EnergyOrderConstraint(data="x", groups=[[0, 1]]), mono, dimer.Z)


def test_constraint_terms_enter_the_loss_and_act(data):
    """build_loss adds every declared term (traced only: the E+F loss is not compiled here);
    the terms themselves, a few optimiser steps on them alone, move the model where they say."""
    dimer, mono = data
    cfg = parse_config({"model": {"family": "bpnn", "hidden": [4], "n_radial": 3, "cutoff": 4.0},
                        "loss": {"constraints": {
                            "dissociation": {"fragments": FRAGMENTS, "fragment_data": ["shipped:H2O"] * 2,
                                             "n_probes": 4},
                            "repulsive_wall": {"pair": "O-O", "below": 2.3, "r_min": 1.6, "n_probes": 4},
                            # a margin keeps the hinge active on an untrained model, so it can be seen acting
                            "energy_order": {"data": "shipped:water_dimer", "frames": list(range(4)), "margin": 0.5}}}})
    cc = cfg.loss.constraints
    model = build_model(cfg.model.model_dump(mode="json"), species=(1, 8))
    params, _ = normalize_params(model, jax.jit(model.init)(jax.random.PRNGKey(0)), dimer, "species_lstsq")
    loss = build_loss(cfg, model, dimer, [1, 8])
    w = (jnp.asarray(1.0), jnp.asarray(1.0), jnp.asarray(0.0))
    _, aux = jax.eval_shape(loss, params, make_batch(dimer, np.arange(4), 4), *w)
    assert {"loss_E", "loss_F", "loss_dissociation", "loss_wall", "loss_order"} <= set(aux)

    sigma_E, sigma_F = float(np.std(dimer.E)) / 6, 1.0  # one composition: the species references remove the mean
    order = order_probes(cc.energy_order, load_shipped("water_dimer"), dimer.Z)
    terms = make_constraint_loss(model.apply, cc, dissociation=dissociation_probes(cc.dissociation, dimer.Z,
                                                                                   [mono, mono], seed=0),
                                 wall=wall_probes(cc.repulsive_wall, dimer, seed=0), order=order,
                                 sigma_E=sigma_E, sigma_F=sigma_F)
    value_and_grad = jax.jit(jax.value_and_grad(terms, has_aux=True))
    (value, aux), _ = value_and_grad(params)
    np.testing.assert_allclose(float(value), float(aux["loss_dissociation"] + aux["loss_wall"] + aux["loss_order"]),
                               rtol=1e-12)
    # with_constraints adds the terms to a batch loss
    batch_loss = lambda p, b, *w: (jnp.asarray(2.0), {"loss_E": jnp.asarray(2.0)})  # noqa: E731
    total, both = jax.jit(with_constraints(batch_loss, terms))(params, None, *w)
    np.testing.assert_allclose(float(total), 2.0 + float(value), rtol=1e-12)
    assert set(both) == {"loss_E"} | set(aux)
    assert float(aux["loss_dissociation"]) > 1e-3  # an untrained model misses the limit
    # the order term is the hinge on the model's own energies of the conformers
    E = np.asarray(jax.jit(jax.vmap(model.apply, in_axes=(None, 0, 0)))(params, jnp.asarray(order.R), order.system))
    hinge = np.maximum(E[order.pairs[:, 0]] - E[order.pairs[:, 1]] + 0.5, 0.0) / 6
    np.testing.assert_allclose(float(aux["loss_order"]), np.mean((hinge / sigma_E) ** 2), rtol=1e-8)
    assert float(aux["loss_order"]) > 1e-3
    opt = optax.adam(1e-2)
    state = opt.init(params)
    for _ in range(15):  # a few optimiser steps move the limit towards the target and undo the inversions
        (_, a), g = value_and_grad(params)
        updates, state = opt.update(g, state)
        params = optax.apply_updates(params, updates)
    assert float(a["loss_dissociation"]) < 0.5 * float(aux["loss_dissociation"])
    assert float(a["loss_order"]) < 0.5 * float(aux["loss_order"])


def test_net_force_weight_is_a_warned_no_op(caplog):
    with caplog.at_level(logging.WARNING, logger="qdyn"):
        parse_config({"loss": {"net_force_weight": 1.0}})
    assert "does nothing" in caplog.text
    assert not ConstraintsConfig().active
