"""An IMPALA-style actor-critic (Espeholt et al., 2018): one gradient step per rollout on
V-trace targets (rlax's `vtrace_td_error_and_advantage`), which correct for a behaviour
policy that lags behind the learner's. On the host loop the actors may run ahead of the
learner (`--max-staleness N`: acting uses parameters up to N updates old); the importance
ratios `pi / mu` of the learner's policy to the one that acted, clipped at
`clip_rho_threshold` (targets) and `clip_pg_rho_threshold` (policy gradient), make up for
it. On the device loop acting and learning alternate, so the ratios are 1 and V-trace is
the n-step return. The network and acting are PPO's (`ppo.actor_critic`): categorical or
Gaussian policies, the behaviour log-probabilities in the rollout's extras. Where the
observations end with the legal-action mask (`EnvSpec.action_mask`), the learner's policy
is the masked one that acted (`ppo.legal_policy`): its log-probabilities, ratios and
entropy cover the legal actions only."""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
import rlax
from purerl.agents.optimizers import apply_gradients
from purerl.agents.options import NetworkOptions, OptimizerOptions
from purerl.agents.ppo import (
    RAW_ACTION,
    PPOState,
    actor_critic,
    fold_episode_ends,
    legal_policy,
)
from purerl.core import (
    DEVICE_AXIS,
    Agent,
    Context,
    Metrics,
    Recipe,
    Transition,
    maybe_pmean,
    require_positive_fields,
)
from purerl.networks import ActorCritic
from purerl.replay import Schedule, on_policy


@dataclasses.dataclass(frozen=True, kw_only=True)
class IMPALAConfig(NetworkOptions, OptimizerOptions):
    """IMPALA hyperparameters (with the network and optimizer settings of `NetworkOptions`
    and `OptimizerOptions`; by default Adam with its step size decaying linearly to 0,
    gradients clipped to norm 0.5, a tanh MLP).

    Attributes:
      learning_rate: the optimizer's step size.
      gamma: discount factor.
      vtrace_lambda: V-trace's lambda (1: the paper's targets).
      clip_rho_threshold: importance ratios in the value targets are clipped to this.
      clip_pg_rho_threshold: and in the policy-gradient advantages to this.
      ent_coef: weight of the entropy bonus.
      vf_coef: weight of the value loss.
      num_envs: environments stepped in parallel, over all devices.
      num_steps: steps per environment in each rollout.
      log_std_init: continuous actions: the Gaussian policy's log-std at the start.
      stack_torsos: evaluate the actor's and critic's torsos as one stacked network (see
        `purerl.agents.ppo.PPOConfig.stack_torsos`; off: slower on a CPU).
    """

    action_spaces = ("discrete", "continuous")  # Not an option: the spaces it acts in.

    learning_rate: float = 2e-3
    lr_schedule: str = "linear"
    max_grad_norm: float = 0.5
    activation: str = "tanh"
    gamma: float = 0.99
    vtrace_lambda: float = 1.0
    clip_rho_threshold: float = 1.0
    clip_pg_rho_threshold: float = 1.0
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    num_envs: int = 16
    num_steps: int = 20
    log_std_init: float = 0.0
    stack_torsos: bool = False

    def __post_init__(self) -> None:
        self.check_optimizer_options()
        self.check_network()
        require_positive_fields(self, "num_envs", "num_steps")
        if not 0.0 <= self.vtrace_lambda <= 1.0:
            raise ValueError(
                f"IMPALAConfig.vtrace_lambda must be in [0, 1]; got {self.vtrace_lambda}."
            )
        if self.clip_rho_threshold <= 0 or self.clip_pg_rho_threshold <= 0:
            raise ValueError(
                "IMPALAConfig's clip_rho_threshold and clip_pg_rho_threshold must be positive."
            )

    @property
    def recurrent(self) -> bool:
        return False


def vtrace(
    r_t: jax.Array,
    terminated_t: jax.Array,
    truncated_t: jax.Array,
    v_tm1: jax.Array,
    v_t: jax.Array,
    rho_tm1: jax.Array,
    gamma: float,
    lambda_: float = 1.0,
    clip_rho_threshold: float = 1.0,
    clip_pg_rho_threshold: float = 1.0,
) -> rlax.VTraceOutput:
    """V-trace over a time-major rollout `[T]` of auto-resetting environments: the
    arguments as `ppo.gae_advantages`' (episode ends folded in by `ppo.fold_episode_ends`),
    with `rho_tm1` `[T]`, the importance ratios `pi(a|s) / mu(a|s)` of the actions taken.

    Returns:
      rlax's `VTraceOutput`: `errors` (targets minus `v_tm1`), `pg_advantage`, `q_estimate`.
    """
    chex.assert_rank([r_t, terminated_t, truncated_t, v_tm1, v_t, rho_tm1], 1)
    r_t, discount_t = fold_episode_ends(r_t, terminated_t, truncated_t, v_t, gamma)
    return rlax.vtrace_td_error_and_advantage(
        v_tm1,
        v_t,
        r_t,
        discount_t,
        rho_tm1,
        lambda_=lambda_,
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
    )


def make(
    config: IMPALAConfig, *, num_updates: int | None = None, axis_name: str | None = None
) -> Agent:
    """Builds an IMPALA agent.

    Args:
      config: the hyperparameters.
      num_updates: learner updates (rollouts) in the run; the horizon of a decaying
        `lr_schedule`.
      axis_name: a named device axis to average gradients over (data-parallel learner).
    """
    tx = optax.flatten(config.make_optimizer(config.learning_rate, num_updates))
    init, act, initial_carry = actor_critic(config, tx, "IMPALA")

    def loss(
        params: Any, network: ActorCritic, batch: Transition, masked: bool
    ) -> tuple[jax.Array, Metrics]:
        def forward(p: Any, b: Transition) -> Any:
            return network.apply(p, b.obs)

        pi, v_tm1 = (legal_policy(forward) if masked else forward)(params, batch)
        v_t = jax.lax.stop_gradient(network.apply(params, batch.next_obs, method=ActorCritic.value))
        log_prob = pi.log_prob(batch.extras.get(RAW_ACTION, batch.action))
        rho = jnp.exp(jax.lax.stop_gradient(log_prob) - batch.extras["log_prob"])
        out = jax.vmap(vtrace, in_axes=(1, 1, 1, 1, 1, 1, None, None, None, None), out_axes=1)(
            batch.reward.astype(jnp.float32),
            batch.terminated,
            batch.truncated,
            v_tm1,
            v_t,
            rho,
            config.gamma,
            config.vtrace_lambda,
            config.clip_rho_threshold,
            config.clip_pg_rho_threshold,
        )
        pg_loss = -jnp.mean(log_prob * jax.lax.stop_gradient(out.pg_advantage))
        value_loss = 0.5 * jnp.mean(jnp.square(out.errors))
        entropy = jnp.mean(pi.entropy())
        total = pg_loss + config.vf_coef * value_loss - config.ent_coef * entropy
        return total, {
            "pg_loss": pg_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "rho_mean": jnp.mean(rho),
            "value_mean": jnp.mean(v_tm1),
        }

    def learn(state: PPOState, batch: Transition, key: jax.Array) -> tuple[PPOState, Metrics]:
        """One V-trace actor-critic step on a time-major rollout `[T, B]`."""
        del key
        chex.assert_rank(batch.reward, 2)
        grads, metrics = jax.grad(loss, has_aux=True)(
            state.params, state.network, batch, state.action_mask
        )
        params, opt_state = apply_gradients(grads, state.opt_state, state.params, tx, axis_name)
        new_state = state.replace(params=params, opt_state=opt_state, steps=state.steps + 1)
        return new_state, maybe_pmean(metrics, axis_name)

    return Agent(init=init, act=act, learn=learn, initial_carry=initial_carry)


def recipe(config: IMPALAConfig, context: Context) -> Recipe:
    """IMPALA's data path (each update learns from the rollout just collected, or on the
    host loop with `--max-staleness`, from one acted by a slightly older policy) and
    schedule."""
    agent = make(config, num_updates=context.num_updates, axis_name=DEVICE_AXIS)
    schedule = Schedule(rollout_length=config.num_steps)
    return Recipe(agent, on_policy(), schedule, config.num_envs, config.gamma)
