"""purerl: reinforcement-learning agents as pure JAX functions."""

__version__ = "0.1.0"


def load_policy(run_dir, seed_index: int = 0):
    """A trained run's deterministic policy, jitted: `policy(obs[B, ...], key) -> action[B]`
    (recurrent policies: `policy.step(carry, obs, key)`).

    See `purerl.experiments.engine.policy.load_policy`.
    """
    from purerl.experiments.engine.policy import load_policy as _load_policy

    return _load_policy(run_dir, seed_index)


def train(
    agent,
    data,
    schedule,
    run=None,
    *,
    num_envs: int = 8,
    name: str = "custom",
    off_policy: bool = False,
):
    """Trains your own `Agent(init, act, learn)` on purerl's loops. See
    `purerl.experiments.engine.trainer.train_agent`."""
    from purerl.experiments.engine.trainer import train_agent

    return train_agent(
        agent, data, schedule, run, num_envs=num_envs, name=name, off_policy=off_policy
    )
