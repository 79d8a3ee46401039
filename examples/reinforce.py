"""Your own agent on purerl's loops: REINFORCE (Williams, 1992) in a few dozen lines, trained
with logs, checkpoints, evaluation and a saved policy by `purerl.train`, which hands the
trained parameters back.

    python examples/reinforce.py                       # CartPole-v1 on the device loop
    python examples/reinforce.py gymnasium:CartPole-v1  # the same agent on the host loop

`make_recipe` is a factory: `purerl.train` records it (`reinforce:make_recipe`) in the run's
config.json, so `purerl.load_policy(run_dir)`, `purerl enjoy` and `purerl resume` rebuild the
agent from it.
"""

import sys

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import purerl
import rlax
from purerl import RunConfig
from purerl.core import DEVICE_AXIS, Agent, Recipe, feed_forward
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


def make_recipe() -> Recipe:
    """The agent with how it trains: on the rollout just collected, 8 envs x 256 steps."""
    return Recipe(make_reinforce(), on_policy(), Schedule(rollout_length=256), num_envs=8)


def main(env="CartPole-v1", total_timesteps=300_000, **run):
    result = purerl.train(
        make_recipe,
        run=RunConfig(env=env, total_timesteps=total_timesteps, **run),
        name="reinforce",
    )
    # The trained parameters come back: act with the first seed's on a batch of observations.
    agent, state = make_reinforce(), result.state(0)
    obs = jnp.zeros((4,) + (4,))  # CartPole's 4 numbers, for 4 envs.
    action, _, _ = agent.act(state, (), obs, jax.random.PRNGKey(0), True)
    print(f"greedy actions of the trained policy on zero observations: {action.tolist()}")
    return result


if __name__ == "__main__":
    main(*sys.argv[1:2])
