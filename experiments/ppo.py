"""Train PPO: `python -m purerl.experiments.ppo --env CartPole-v1` (a JAX env, on the device
loop) or `--env gymnasium:CartPole-v1` (a Python env, on the host loop)."""

from __future__ import annotations

import dataclasses
from typing import Any

from purerl.agents import ppo
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOExperiment:
    """Train PPO on any environment, data-parallel over all local devices."""

    run: RunConfig = RunConfig()
    agent: ppo.PPOConfig = ppo.PPOConfig()


def run(run: RunConfig, config: ppo.PPOConfig) -> dict[str, Any]:
    """Trains PPO and returns the run summary."""

    def build(num_devices: int, plan: Plan, host: bool) -> Recipe:
        # The device loop gives each device its own envs; the host loop steps them all on
        # the host and splits each rollout over the devices to learn.
        per_device = anakin.global_shape(config.num_envs, "--num-envs", num_devices)
        if (per_device * config.num_steps) % config.num_minibatches:
            raise ValueError(
                f"--num-minibatches ({config.num_minibatches}) must divide each device's "
                f"rollout of {per_device} envs x {config.num_steps} steps."
            )
        agent = ppo.make(config, num_updates=plan.num_updates, axis_name=anakin.DEVICE_AXIS)
        return Recipe(agent, config.num_envs if host else per_device, config.num_steps)

    return train("ppo", run, config, build, steps_per_update=config.rollout_size)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(PPOExperiment, argv)
    if args.run.resume:
        return run(*resume_configs(args, "ppo"))
    return run(args.run, args.agent)


if __name__ == "__main__":
    cli_main(main)
