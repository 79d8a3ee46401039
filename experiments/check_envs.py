"""Every JAX environment `purerl.envs.available()` lists, with every registered agent, for a
few thousand steps: each pair either trains (its final return is printed) or is refused with
the agent's one-line reason (a discrete-action agent on a continuous env, ...), or the env
cannot be made on this machine and says why. Anything else is a failure, printed with its
error, and the exit status is 1.

    python -m purerl.experiments.check_envs                  # all envs x all agents
    python -m purerl.experiments.check_envs --agents dqn --envs UmbrellaChain-bsuite
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from typing import Any

# Small settings, set on each agent config that has the field.
SMALL = {
    "num_envs": 4,
    "num_steps": 16,
    "num_minibatches": 2,
    "update_epochs": 1,
    "buffer_size": 2_000,
    "batch_size": 32,
    "learning_starts": 256,
    "hidden_sizes": (32,),
}
# What a refusal says: the agent's reason, not an internal error.
REFUSALS = ("needs a discrete action space", "needs a continuous", "needs array observations")
# An environment that cannot be made here, and says why (MNISTBandit offline).
UNAVAILABLE = ("downloads its data",)


def small_config(entry: Any) -> Any:
    cls = entry.config_class()
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in SMALL.items() if k in names})


def check(agent: str, env: str, steps: int) -> tuple[str, str]:
    """`(outcome, detail)`: "trained", "refused", "unavailable" (the env cannot be made
    here, and says why) or "FAILED"."""
    from purerl.agents import registry
    from purerl.experiments.engine.config import RunConfig
    from purerl.experiments.engine.trainer import train

    entry = registry.get(agent)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunConfig(
            env=env,
            total_timesteps=steps,
            num_logs=1,
            run_dir=tmp,
            quiet=True,
            plot=False,
            num_devices=1,
            checkpoint_every=0,
        )
        try:
            summary = train(entry, run, small_config(entry))
        except ValueError as e:
            message = str(e).splitlines()[0]
            if any(r in message for r in REFUSALS):
                return "refused", message
            if any(r in message for r in UNAVAILABLE):
                return "unavailable", message
            return "FAILED", f"ValueError: {message}"
        except Exception as e:  # noqa: BLE001 - reported, then the exit status says so.
            return "FAILED", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return "trained", f"final return {summary['final_return_mean']:.2f}"


def main(argv: list[str] | None = None) -> int:
    from purerl import envs
    from purerl.agents import registry

    parser = argparse.ArgumentParser(
        prog="python -m purerl.experiments.check_envs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--agents",
        nargs="+",
        metavar="AGENT",
        default=registry.names(),
        help=f"the agents to try (default: all registered: {' '.join(registry.names())})",
    )
    parser.add_argument(
        "--envs",
        nargs="+",
        metavar="ENV",
        default=None,
        help="the environments to try, any --env name (default: every JAX environment "
        "purerl.envs.available() lists)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=2_000,
        help="env steps each agent trains on each env (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be positive; got {args.steps}.")
    for agent in args.agents:
        try:
            registry.get(agent)
        except ValueError as e:
            parser.error(str(e))
    failures = 0
    for env in args.envs or envs.available():
        for agent in args.agents:
            t = time.perf_counter()
            outcome, detail = check(agent, env, args.steps)
            failures += outcome == "FAILED"
            print(f"{env:26s} {agent:8s} {outcome:8s} {time.perf_counter() - t:5.1f}s  {detail}")
            sys.stdout.flush()
    print(f"{failures} failure(s)")
    return int(failures > 0)


if __name__ == "__main__":
    sys.exit(main())
