"""Train DQN: `python -m purerl.experiments.dqn --env CartPole-v1` (a JAX env, on the device
loop) or `--env gymnasium:CartPole-v1` (a Python env, on the host loop)."""

from __future__ import annotations

import dataclasses
from typing import Any

from purerl.agents import dqn
from purerl.experiments import anakin
from purerl.experiments.common import (
    Plan,
    Recipe,
    RunConfig,
    cli_main,
    parse,
    resume_configs,
    train,
)
from purerl.replay import make_uniform


@dataclasses.dataclass(frozen=True, kw_only=True)
class DQNExperiment:
    """Train DQN on any environment, data-parallel over all local devices."""

    run: RunConfig = RunConfig()
    agent: dqn.DQNConfig = dqn.DQNConfig()


def run(run: RunConfig, config: dqn.DQNConfig) -> dict[str, Any]:
    """Trains DQN and returns the run summary."""
    if config.learning_starts > config.buffer_size:
        raise ValueError(
            f"--learning-starts ({config.learning_starts}) exceeds --buffer-size "
            f"({config.buffer_size}): the buffer could never hold enough to start learning."
        )

    def build(num_devices: int, plan: Plan, host: bool) -> Recipe:
        del plan
        num_envs = anakin.global_shape(config.num_envs, "--num-envs", num_devices)
        batch_size = anakin.global_shape(config.batch_size, "--batch-size", num_devices)
        capacity = anakin.global_shape(config.buffer_size, "--buffer-size", num_devices)
        min_size = max(batch_size, config.learning_starts // num_devices)
        buffer = make_uniform(capacity, batch_size, min_size)
        agent = dqn.make(config, axis_name=anakin.DEVICE_AXIS)
        return Recipe(agent, config.num_envs if host else num_envs, config.train_frequency, buffer)

    return train(
        "dqn",
        run,
        config,
        build,
        steps_per_update=config.env_steps_per_update,
        off_policy=True,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(DQNExperiment, argv)
    if args.run.resume:
        return run(*resume_configs(args, "dqn"))
    return run(args.run, args.agent)


if __name__ == "__main__":
    cli_main(main)
