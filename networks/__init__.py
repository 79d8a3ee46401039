"""Flax Linen networks: torsos and heads, with no knowledge of configs or environments."""

from purerl.networks.heads import (
    ActorCritic,
    CategoricalHead,
    QHead,
    QNetwork,
    ValueHead,
    observation_dims,
)
from purerl.networks.torsos import MLP, activation_fn

__all__ = [
    "MLP",
    "activation_fn",
    "QHead",
    "QNetwork",
    "CategoricalHead",
    "ValueHead",
    "ActorCritic",
    "observation_dims",
]
