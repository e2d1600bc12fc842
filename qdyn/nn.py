"""Flax building blocks shared by the classical parts of qdyn's models."""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """tanh MLP; with ``out`` a final linear layer of that width (``out=1`` returns a scalar
    per row). ``param_dtype`` is explicit because flax defaults to float32 even under x64."""

    hidden: tuple[int, ...]
    param_dtype: jnp.dtype
    out: Optional[int] = None

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.tanh(nn.Dense(h, param_dtype=self.param_dtype, dtype=self.param_dtype)(x))
        if self.out is None:
            return x
        y = nn.Dense(self.out, param_dtype=self.param_dtype, dtype=self.param_dtype)(x)
        return y[..., 0] if self.out == 1 else y


class SpeciesMLP(NamedTuple):
    """One MLP per element (Behler–Parrinello atomic networks), parameters ``{str(Z): flax params}``.

    Attributes:
        init: ``init(key, n_features, dtype) -> {str(z): params}`` (one key split per element).
        apply: ``apply(nets, x [n, F], idx int [n], dtype) -> [n]`` (``out=1``) or ``[n, out]``:
            row a from the network of element ``species[idx[a]]``, computed in ``dtype``; rows
            with no element (idx < 0, padding) are zero.
    """

    init: Callable
    apply: Callable


def species_mlp(species: Sequence[int], hidden: Sequence[int], out: int) -> SpeciesMLP:
    """The per-element networks of the models with atomic networks (BPNN, multistate)."""
    species = tuple(int(z) for z in species)

    def init(key, n_features: int, dtype):
        net = MLP(hidden=tuple(hidden), param_dtype=dtype, out=out)
        x = jnp.zeros((1, n_features), dtype)
        return {str(z): net.init(k, x)["params"] for z, k in zip(species, jax.random.split(key, len(species)))}

    def apply(nets, x, idx, dtype):
        net = MLP(hidden=tuple(hidden), param_dtype=dtype, out=out)
        y = jnp.zeros((x.shape[0],) if out == 1 else (x.shape[0], out), dtype)
        # every network sees every row (static shapes under jit); each row keeps its own element's
        for k, z in enumerate(species):
            pick = (idx == k) if out == 1 else (idx == k)[:, None]
            y = jnp.where(pick, net.apply({"params": nets[str(z)]}, x), y)
        return y

    return SpeciesMLP(init=init, apply=apply)
