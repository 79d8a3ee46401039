"""Heads: features -> Q-values, policies, values; and the small networks built from them."""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
from purerl.networks.torsos import MLP


class QHead(nn.Module):
    """Q-values `[..., num_actions]`; with `dueling`, V + A - mean(A) (Wang et al., 2016)."""

    num_actions: int
    dueling: bool = False

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        if not self.dueling:
            return nn.Dense(self.num_actions, name="q")(features)
        value = nn.Dense(1, name="value")(features)
        advantage = nn.Dense(self.num_actions, name="advantage")(features)
        return value + advantage - advantage.mean(axis=-1, keepdims=True)


class QNetwork(nn.Module):
    """MLP torso + Q head: `obs[..., *obs_shape] -> q[..., num_actions]`."""

    num_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    num_obs_dims: int = 1
    dueling: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        features = MLP(self.hidden_sizes, self.activation, self.num_obs_dims)(obs)
        return QHead(self.num_actions, self.dueling)(features)


class CategoricalHead(nn.Module):
    """Logits -> a `distrax.Categorical` policy; small init so the first policy is near uniform."""

    num_actions: int

    @nn.compact
    def __call__(self, features: jax.Array) -> distrax.Categorical:
        logits = nn.Dense(self.num_actions, kernel_init=nn.initializers.orthogonal(0.01))(features)
        return distrax.Categorical(logits=logits)


class ValueHead(nn.Module):
    """A scalar state value `[...]`."""

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        return nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(features)[..., 0]


class ActorCritic(nn.Module):
    """Separate MLP torsos for a categorical policy and a value: `obs -> (pi, v[...])`."""

    num_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    num_obs_dims: int = 1

    def setup(self) -> None:
        self.actor_torso = MLP(self.hidden_sizes, self.activation, self.num_obs_dims)
        self.critic_torso = MLP(self.hidden_sizes, self.activation, self.num_obs_dims)
        self.policy_head = CategoricalHead(self.num_actions)
        self.value_head = ValueHead()

    def __call__(self, obs: jax.Array) -> tuple[distrax.Categorical, jax.Array]:
        return self.policy(obs), self.value(obs)

    def policy(self, obs: jax.Array) -> distrax.Categorical:
        return self.policy_head(self.actor_torso(obs))

    def value(self, obs: jax.Array) -> jax.Array:
        return self.value_head(self.critic_torso(obs))


def observation_dims(shape: Sequence[int]) -> int:
    """How many trailing axes one observation of this shape has (for flattening)."""
    return len(tuple(shape))


__all__ = [
    "QHead",
    "QNetwork",
    "CategoricalHead",
    "ValueHead",
    "ActorCritic",
    "observation_dims",
]
