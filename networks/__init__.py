"""Flax Linen networks: torsos and heads, with no knowledge of configs or environments."""

from purerl.networks.heads import (
    ActorCritic,
    CategoricalHead,
    DeterministicPolicy,
    GaussianHead,
    QHead,
    QNetwork,
    RecurrentActorCritic,
    RecurrentQNetwork,
    TanhGaussianPolicy,
    TwinQ,
    ValueHead,
)
from purerl.networks.noisy import NoisyDense
from purerl.networks.torsos import (
    MLP,
    TORSOS,
    ConvTorso,
    RecurrentCore,
    activation_fn,
    is_recurrent,
    make_torso,
)

__all__ = [
    "MLP",
    "ConvTorso",
    "RecurrentCore",
    "TORSOS",
    "activation_fn",
    "is_recurrent",
    "make_torso",
    "NoisyDense",
    "QHead",
    "QNetwork",
    "CategoricalHead",
    "GaussianHead",
    "ValueHead",
    "ActorCritic",
    "RecurrentActorCritic",
    "RecurrentQNetwork",
    "TanhGaussianPolicy",
    "DeterministicPolicy",
    "TwinQ",
]
