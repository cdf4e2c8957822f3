"""The shape every policy shares."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from policies._statistics import ArmStatistics, FloatArray, IndexArray


class Policy(Protocol):
    """Chooses arms from sufficient statistics; pure, with the randomness passed in."""

    def choose(self, stats: ArmStatistics, rng: np.random.Generator, size: int) -> IndexArray:
        """Choose `size` arms independently from the current statistics; shape (size,)."""
        ...

    def allocation(self, stats: ArmStatistics, rng: np.random.Generator) -> FloatArray:
        """Probability that the next choice is each arm; shape (K,), sums to 1."""
        ...


def argmax_ties_shared(values: FloatArray) -> FloatArray:
    """One-hot of the maximum of `values`, split evenly between ties; shape (K,)."""
    best = values == values.max()
    shares: FloatArray = best / best.sum()
    return shares


def choose_from_allocation(allocation: FloatArray, rng: np.random.Generator, size: int) -> IndexArray:
    """Draw `size` arm indices from a categorical distribution; shape (size,)."""
    return rng.choice(allocation.shape[0], size=size, p=allocation)
