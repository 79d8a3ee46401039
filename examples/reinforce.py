"""Your own agent on purerl's loops: REINFORCE (Williams, 1992) in a few dozen lines, trained
with logs, checkpoints, evaluation and a saved summary by `purerl.train`.

    python examples/reinforce.py                       # CartPole-v1 on the device loop
    python examples/reinforce.py gymnasium:CartPole-v1  # the same agent on the host loop
"""

import sys

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import purerl
import rlax
from purerl.core import DEVICE_AXIS, Agent, feed_forward
from purerl.experiments.engine.config import RunConfig
from purerl.replay import Schedule, on_policy


class Policy(nn.Module):
    @nn.compact
    def __call__(self, obs):
        logits = nn.Dense(2)(nn.tanh(nn.Dense(64)(obs)))
        return distrax.Categorical(logits=logits)


def make_reinforce(learning_rate=1e-2, gamma=0.99):
    net, tx = Policy(), optax.adam(learning_rate)

    def init(key, spec):
        params = net.init(key, jnp.zeros((1,) + spec.observation_space.shape))
        return params, tx.init(params)

    def act(state, obs, key, deterministic=False):
        pi = net.apply(state[0], obs)
        return (pi.mode() if deterministic else pi.sample(seed=key)).astype(jnp.int32), {}

    def learn(state, rollout, key):  # `rollout`: the on-policy data path's `[T, B]` steps.
        params, opt_state = state
        discount = gamma * (1.0 - (rollout.terminated | rollout.truncated))
        returns = jax.vmap(rlax.discounted_returns, in_axes=(1, 1, None), out_axes=1)(
            rollout.reward, discount, 0.0
        )
        advantage = (returns - returns.mean()) / (returns.std() + 1e-8)

        def loss(p):
            return -jnp.mean(net.apply(p, rollout.obs).log_prob(rollout.action) * advantage)

        value, grads = jax.value_and_grad(loss)(params)
        grads = jax.lax.pmean(grads, DEVICE_AXIS)  # The data-parallel learner.
        updates, opt_state = tx.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), {"loss": value}

    return Agent(init, feed_forward(act), learn)


def main(env="CartPole-v1", total_timesteps=300_000, **run):
    return purerl.train(
        make_reinforce(),
        on_policy(),
        Schedule(rollout_length=256),
        RunConfig(env=env, total_timesteps=total_timesteps, **run),
        num_envs=8,
        name="reinforce",
    )


if __name__ == "__main__":
    main(*sys.argv[1:2])
