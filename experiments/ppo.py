"""Train PPO on the device loop: `python -m purerl.experiments.ppo --env CartPole-v1`."""

from __future__ import annotations

import dataclasses
from typing import Any

from purerl.agents import ppo
from purerl.experiments import anakin
from purerl.experiments.common import Plan, RunConfig, cli_main, parse, resume_configs, train


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOExperiment:
    """Train PPO on a JAX environment, data-parallel over all local devices."""

    run: RunConfig = RunConfig()
    agent: ppo.PPOConfig = ppo.PPOConfig()


def run(run: RunConfig, config: ppo.PPOConfig) -> dict[str, Any]:
    """Trains PPO and returns the run summary."""
    from purerl import envs

    env, env_params = envs.make(run.env)

    def build(num_devices: int, plan: Plan):
        num_envs = anakin.global_shape(config.num_envs, "--num-envs", num_devices)
        if (num_envs * config.num_steps) % config.num_minibatches:
            raise ValueError(
                f"--num-minibatches ({config.num_minibatches}) must divide each device's "
                f"rollout of {num_envs} envs x {config.num_steps} steps."
            )
        agent = ppo.make(config, num_updates=plan.num_updates, axis_name=anakin.DEVICE_AXIS)

        def update(vec_env):
            return anakin.make_on_policy_update(agent, vec_env, env_params, config.num_steps)

        return agent, update, num_envs, None

    return train(
        "ppo",
        run,
        config,
        env,
        env_params,
        build,
        steps_per_update=config.rollout_size,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(PPOExperiment, argv)
    if args.run.resume:
        return run(*resume_configs(args, "ppo"))
    return run(args.run, args.agent)


if __name__ == "__main__":
    cli_main(main)
