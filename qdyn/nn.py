"""Flax building blocks shared by the classical parts of qdyn's models."""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
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
