"""Heads: features -> Q-values, policies, values; and the small networks that put a torso
(from `networks.torsos`) and heads together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
from purerl.networks.noisy import NOISE, NoisyDense, scaled_noise
from purerl.networks.torsos import MLP, RecurrentCore, StackedMLP


class QHead(nn.Module):
    """Q-values `[..., num_actions]`, or a value distribution per action
    `[..., num_actions, num_atoms]` (categorical logits for C51, quantiles for QR-DQN).

    Attributes:
      num_actions: discrete actions.
      dueling: `V + A - mean(A)` (Wang et al., 2016), per atom for a distribution.
      num_atoms: 0 for plain Q-values; otherwise the size of each action's distribution.
      noisy: noisy linear layers (Fortunato et al., 2018; `networks.noisy`) in place of dense
        ones; they draw noise only when applied with a `"noise"` RNG.
      noisy_sigma: the noisy layers' initial noise scale.
    """

    num_actions: int
    dueling: bool = False
    num_atoms: int = 0
    noisy: bool = False
    noisy_sigma: float = 0.5

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        atoms = max(1, self.num_atoms)
        names = ("value", "advantage") if self.dueling else ("q",)
        sizes = (atoms, self.num_actions * atoms) if self.dueling else (self.num_actions * atoms,)
        noise = dict.fromkeys(names)
        if self.noisy and self.has_rng(NOISE):  # Every layer's factors from one draw.
            fan_in = features.shape[-1]
            factors = scaled_noise(
                self.make_rng(NOISE), tuple(n for size in sizes for n in (fan_in, size))
            )
            noise = {name: tuple(factors[2 * i : 2 * i + 2]) for i, name in enumerate(names)}

        def layer(size: int, name: str) -> jax.Array:
            if self.noisy:
                out = NoisyDense(size, self.noisy_sigma, name=name)(features, noise[name])
            else:
                out = nn.Dense(size, name=name)(features)
            if self.num_atoms:
                return out.reshape(out.shape[:-1] + (size // atoms, atoms))
            return out

        if not self.dueling:
            return layer(sizes[0], names[0])
        value = layer(sizes[0], "value")
        advantage = layer(sizes[1], "advantage")
        if not self.num_atoms:
            return value + advantage - advantage.mean(axis=-1, keepdims=True)
        return value + advantage - advantage.mean(axis=-2, keepdims=True)


class QNetwork(nn.Module):
    """Torso + Q head: `obs[..., *obs_shape] -> q[..., num_actions]` (or
    `[..., num_actions, num_atoms]` for a distributional head; see `QHead`)."""

    torso: nn.Module
    num_actions: int
    dueling: bool = False
    num_atoms: int = 0
    noisy: bool = False
    noisy_sigma: float = 0.5

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        head = QHead(self.num_actions, self.dueling, self.num_atoms, self.noisy, self.noisy_sigma)
        return head(self.torso(obs))


class RecurrentQNetwork(nn.Module):
    """A recurrent core + Q head, one time step: `(carry, obs[B, ...]) -> (carry,
    q[B, num_actions])` (R2D2's network)."""

    core: nn.Module
    num_actions: int
    dueling: bool = False

    @nn.compact
    def __call__(self, carry: Any, obs: jax.Array) -> tuple[Any, jax.Array]:
        carry, features = self.core(carry, obs)
        return carry, QHead(self.num_actions, self.dueling)(features)

    def initialize_carry(self, batch_size: int) -> Any:
        return self.core.initialize_carry(batch_size)


class CategoricalHead(nn.Module):
    """Logits -> a `distrax.Categorical` policy; small init so the first policy is near uniform."""

    num_actions: int

    @nn.compact
    def __call__(self, features: jax.Array) -> distrax.Categorical:
        logits = nn.Dense(self.num_actions, kernel_init=nn.initializers.orthogonal(0.01))(features)
        return distrax.Categorical(logits=logits)


class GaussianHead(nn.Module):
    """A diagonal Gaussian policy over `R^A` with a state-independent log-std (a learned
    parameter, starting at `log_std_init`), as continuous-action PPO uses; small init so
    the first policy's mean is near 0."""

    action_dim: int
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, features: jax.Array) -> distrax.MultivariateNormalDiag:
        mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(features)
        log_std = self.param(
            "log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,)
        )
        return distrax.MultivariateNormalDiag(mean, jnp.broadcast_to(jnp.exp(log_std), mean.shape))


class ValueHead(nn.Module):
    """A scalar state value `[...]`."""

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        return nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(features)[..., 0]


class ActorCritic(nn.Module):
    """Separate torsos for a policy and a value: `obs -> (pi, v[...])`; the policy is
    categorical over `num_actions`, or with `continuous` a Gaussian over `R^num_actions`
    (`GaussianHead`).

    Two MLP torsos of one shape are one `StackedMLP` (parameters `torsos`, member 0 the
    actor's, 1 the critic's) where `stack` says so: each layer of both is then one batched
    matmul, so an update launches the kernels of one torso (on a CPU that was slower: see
    `PPOConfig.stack_torsos`). Otherwise they stay apart (`actor_torso`,
    `critic_torso`); `stack_torsos` and `unstack_torsos` turn parameters of one layout into
    the other.
    """

    actor_torso: nn.Module
    critic_torso: nn.Module
    num_actions: int
    continuous: bool = False
    log_std_init: float = 0.0
    stack: bool = False

    @property
    def stacked(self) -> bool:
        """Whether the two torsos are one `StackedMLP`: MLPs of one shape, and `stack`."""
        return self.stack and stackable(self.actor_torso, self.critic_torso)

    def setup(self) -> None:
        if self.stacked:
            self.torsos = StackedMLP.of(self.actor_torso, 2)
        if self.continuous:
            self.policy_head = GaussianHead(self.num_actions, self.log_std_init)
        else:
            self.policy_head = CategoricalHead(self.num_actions)
        self.value_head = ValueHead()

    def __call__(self, obs: jax.Array) -> tuple[distrax.Categorical, jax.Array]:
        if not self.stacked:
            return self.policy(obs), self.value(obs)
        actor, critic = self.torsos(obs)
        return self.policy_head(actor), self.value_head(critic)

    def policy(self, obs: jax.Array) -> distrax.Categorical:
        if self.stacked:
            return self.policy_head(self.torsos(obs, member=0)[0])
        return self.policy_head(self.actor_torso(obs))

    def value(self, obs: jax.Array) -> jax.Array:
        if self.stacked:
            return self.value_head(self.torsos(obs, member=1)[0])
        return self.value_head(self.critic_torso(obs))


def stackable(first: nn.Module, second: nn.Module) -> bool:
    """Whether two torsos are MLPs of one shape (`StackedMLP` evaluates them as one)."""
    fields = ("hidden_sizes", "activation", "num_obs_dims", "kernel_scale", "layer_norm")
    return (
        type(first) is MLP
        and type(second) is MLP
        and all(getattr(first, f) == getattr(second, f) for f in (*fields, "kernel_init"))
    )


def stack_torsos(params: Any, axis: int = 0) -> Any:
    """`ActorCritic` parameters with separate `actor_torso` and `critic_torso` (the layout of
    purerl before the torsos were stacked) in the stacked layout: the same values, each leaf
    of the two torsos stacked as `torsos` (actor first) on `axis` (after any leading axes the
    leaves carry, such as seeds). Other parameters pass unchanged."""
    inner = dict(params["params"])
    actor, critic = inner.pop("actor_torso"), inner.pop("critic_torso")
    inner["torsos"] = jax.tree.map(lambda a, c: jnp.stack([a, c], axis), actor, critic)
    return {**params, "params": inner}


def unstack_torsos(params: Any, axis: int = 0) -> Any:
    """The inverse of `stack_torsos`: stacked `ActorCritic` parameters with the member axis
    `axis` of `torsos` split into `actor_torso` and `critic_torso`."""
    inner = dict(params["params"])
    torsos = inner.pop("torsos")
    inner["actor_torso"] = jax.tree.map(lambda x: jnp.take(x, 0, axis), torsos)
    inner["critic_torso"] = jax.tree.map(lambda x: jnp.take(x, 1, axis), torsos)
    return {**params, "params": inner}


class RecurrentActorCritic(nn.Module):
    """A recurrent core shared by a categorical policy and a value, one time step:
    `(carry, obs[B, ...]) -> (carry, (pi, v[B]))`."""

    core: RecurrentCore
    num_actions: int

    @nn.compact
    def __call__(self, carry: Any, obs: jax.Array) -> tuple[Any, tuple[distrax.Categorical, Any]]:
        carry, features = self.core(carry, obs)
        return carry, (CategoricalHead(self.num_actions)(features), ValueHead()(features))

    def initialize_carry(self, batch_size: int) -> Any:
        return self.core.initialize_carry(batch_size)


class TanhGaussianPolicy(nn.Module):
    """A tanh-squashed diagonal Gaussian policy, `obs -> distribution over [-1, 1]^A`
    (Haarnoja et al., 2018); the log-std is clipped to `[log_std_min, log_std_max]`."""

    torso: nn.Module
    action_dim: int
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> distrax.Distribution:
        features = self.torso(obs)
        mean = nn.Dense(self.action_dim, name="mean")(features)
        log_std = nn.Dense(self.action_dim, name="log_std")(features)
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
        return distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))


class _QFunction(nn.Module):
    """One Q-function of (observation, action): an MLP over their concatenation."""

    hidden_sizes: Sequence[int]
    activation: str
    layer_norm: bool
    kernel_init: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        torso = MLP(
            self.hidden_sizes,
            self.activation,
            layer_norm=self.layer_norm,
            kernel_init=self.kernel_init,
        )
        return nn.Dense(1)(torso(x))[..., 0]


class DeterministicPolicy(nn.Module):
    """A deterministic policy `obs -> tanh(Dense(torso(obs)))` in `[-1, 1]^A` (DDPG's and
    TD3's actor)."""

    torso: nn.Module
    action_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(nn.Dense(self.action_dim, name="action")(self.torso(obs)))


class TwinQ(nn.Module):
    """Independent Q-functions of (observation, action): `-> q[num_critics, ...]`; two by
    default (Fujimoto et al., 2018's clipped double Q; SAC's and TD3's twin critics), one
    for DDPG. Each is an MLP over the concatenation; they are one `nn.vmap`ped ensemble,
    so each layer is one batched matmul for all. Every critic gets its own copy of the input
    `[num_critics, ...]`: from one shared input, XLA fuses the first layers into one matmul
    whose output it must then transpose, member axis first, for every later layer (and back
    for the gradients), and those transposes cost more than the copy on a CPU."""

    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    num_obs_dims: int = 1
    layer_norm: bool = False
    kernel_init: str = "orthogonal"
    num_critics: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        obs = jnp.asarray(obs, jnp.float32)
        if self.num_obs_dims != 1:
            obs = obs.reshape(obs.shape[: obs.ndim - self.num_obs_dims] + (-1,))
        x = jnp.concatenate([obs, action.astype(jnp.float32)], axis=-1)
        x = jnp.broadcast_to(x, (self.num_critics,) + x.shape)
        ensemble = nn.vmap(
            _QFunction,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=0,
            out_axes=0,
            axis_size=self.num_critics,
        )
        return ensemble(
            tuple(self.hidden_sizes), self.activation, self.layer_norm, self.kernel_init
        )(x)


__all__ = [
    "QHead",
    "QNetwork",
    "RecurrentQNetwork",
    "CategoricalHead",
    "GaussianHead",
    "ValueHead",
    "ActorCritic",
    "stackable",
    "stack_torsos",
    "unstack_torsos",
    "RecurrentActorCritic",
    "TanhGaussianPolicy",
    "DeterministicPolicy",
    "TwinQ",
]
