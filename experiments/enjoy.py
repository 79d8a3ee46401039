"""Run a trained policy: `python -m purerl.experiments.enjoy RUN_DIR [--episodes 20]`.

Loads `RUN_DIR`'s saved policy (see `purerl.load_policy`) and reports the returns of
deterministic evaluation episodes on fresh instances of the run's environment.
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m purerl.experiments.enjoy", description=__doc__)
    parser.add_argument("run_dir", help="a finished purerl run directory")
    parser.add_argument("--episodes", type=int, default=20, help="episodes to run (default 20)")
    parser.add_argument("--seed-index", type=int, default=0, help="which of the run's seeds")
    parser.add_argument("--key", type=int, default=0, help="PRNG seed of the episodes")
    args = parser.parse_args(argv)
    from purerl.experiments.evaluate import evaluate
    from purerl.experiments.policy import load_agent, load_policy

    try:
        if args.episodes < 1:
            raise ValueError(f"--episodes must be positive; got {args.episodes}.")
        policy = load_policy(args.run_dir, args.seed_index)
        _, _, config = load_agent(args.run_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    run = jax.jit(
        lambda key: evaluate(policy, config["env"], config["env_params"], key, args.episodes)
    )
    returns, finished = (np.asarray(x) for x in run(jax.random.PRNGKey(args.key)))
    print(
        f"{config['agent']} on {config['run']['env']} (seed index {args.seed_index}): "
        f"return {returns.mean():.2f} +- {returns.std():.2f} over {args.episodes} episodes "
        f"(min {returns.min():.1f}, max {returns.max():.1f}"
        + (f"; {int((~finished).sum())} did not finish)" if not finished.all() else ")")
    )


if __name__ == "__main__":
    main()
