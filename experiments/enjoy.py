"""Run a trained policy: `python -m purerl.experiments.enjoy RUN_DIR [--episodes 20]`.

Loads `RUN_DIR`'s saved policy (see `purerl.load_policy`) and reports the returns and
lengths of deterministic evaluation episodes (epsilon-greedy with `--epsilon`) on fresh
instances of the run's environment (fully jitted for a JAX environment, stepped on the host
for a Python one), and how many a time limit cut off. With
`--render FILE.gif` (or `.mp4` where ffmpeg is installed) it records the first episode: a
Gymnasium environment that renders `rgb_array` frames draws it itself; a gymnax one with
gymnax's visualiser (classic control through its Gymnasium twin, which needs pygame: pip
install -e ".[render]"; MinAtar with matplotlib).
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
    parser.add_argument(
        "--epsilon",
        type=float,
        default=0.0,
        help="act uniformly at random with this probability (discrete actions), as a run's "
        "--eval-epsilon does (default 0: greedy)",
    )
    parser.add_argument(
        "--render", metavar="FILE", help="record the first episode to a video (.gif or .mp4)"
    )
    args = parser.parse_args(argv)
    from purerl.experiments.engine.evaluate import (
        epsilon_greedy,
        evaluate,
        evaluate_host,
        jax_renderer,
        render_episode,
    )
    from purerl.experiments.engine.policy import load_agent, load_policy

    try:
        if args.episodes < 1:
            raise ValueError(f"--episodes must be positive; got {args.episodes}.")
        if not 0.0 <= args.epsilon <= 1.0:
            raise ValueError(f"--epsilon must be in [0, 1]; got {args.epsilon}.")
        policy = load_policy(args.run_dir, args.seed_index)
        _, _, config = load_agent(args.run_dir)
        env_name = config["run"]["env"]
        if args.epsilon:
            policy = epsilon_greedy(policy, args.epsilon, config["spec"].action_space)
        key = jax.random.PRNGKey(args.key)
        if config["env"] is None:  # A host (Python) environment.
            episodes = evaluate_host(
                policy, env_name, key, args.episodes, args.key, render_to=args.render
            )
        else:
            env, env_params = config["env"], config["env_params"]
            if args.render:
                jax_renderer(env, env_name)  # Refused before anything runs.
            run = jax.jit(lambda k: evaluate(policy, env, env_params, k, args.episodes))
            episodes = jax.tree.map(np.asarray, run(key))
            if args.render:
                render_episode(policy, env, env_params, key, args.episodes, args.render, env_name)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    returns, finished, lengths, truncated = episodes
    print(
        f"{config['agent']} on {env_name} (seed index {args.seed_index}): "
        f"return {returns.mean():.2f} +- {returns.std():.2f} over {args.episodes} episodes "
        f"(min {returns.min():.1f}, max {returns.max():.1f}"
        + (f"; {int((~finished).sum())} did not finish)" if not finished.all() else ")")
        + f"; length {lengths.mean():.1f} (min {lengths.min()}, max {lengths.max()}), "
        f"{int(truncated.sum())} of {args.episodes} cut off by a time limit"
    )
    if args.render:
        print(f"video of the first episode: {args.render}")


if __name__ == "__main__":
    main()
