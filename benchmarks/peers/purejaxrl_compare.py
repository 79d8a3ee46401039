"""purerl against PureJaxRL (github.com/luchris429/purejaxrl, not on PyPI), both fully jitted
on gymnax's CartPole-v1 at PureJaxRL's own CartPole settings, alternating rounds in one run;
prints env steps/s and wall time for each side and their ratio.

    python benchmarks/peers/purejaxrl_compare.py ppo --purejaxrl-dir PATH --rounds 3
    python benchmarks/peers/purejaxrl_compare.py dqn --purejaxrl-dir PATH --rounds 3
    python benchmarks/peers/purejaxrl_compare.py ppo --dry-run     # print the settings only

PATH is a checkout of PureJaxRL at the commit README.md names. Run it with purerl's Python;
the PureJaxRL side runs in its own venv (`--peer-python`, see README.md), imports
`purejaxrl/ppo.py` or `purejaxrl/dqn.py` from that checkout as they are and times
`jax.jit(make_train(config))` compiled ahead, then run once. PureJaxRL's `dqn.py` calls
`jax.tree_map`, which JAX removed in 0.6; the PureJaxRL side points that name at
`jax.tree.map` (the same function) before importing it, so both sides run the same JAX.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from common import Case, compare, emit, parser, timed_jit, versions

PEER = "purejaxrl"
PINNED_COMMIT = "31756b197773a52db763fdbe6d635e4b46522a73"
# PureJaxRL's settings: the `config` of `ppo.py`'s and `dqn.py`'s `__main__` (DEBUG off:
# it prints every finished episode from inside the program).
CONFIGS = {
    "ppo": {
        "LR": 2.5e-4,
        "NUM_ENVS": 4,
        "NUM_STEPS": 128,
        "TOTAL_TIMESTEPS": 500_000,
        "UPDATE_EPOCHS": 4,
        "NUM_MINIBATCHES": 4,
        "GAMMA": 0.99,
        "GAE_LAMBDA": 0.95,
        "CLIP_EPS": 0.2,
        "ENT_COEF": 0.01,
        "VF_COEF": 0.5,
        "MAX_GRAD_NORM": 0.5,
        "ACTIVATION": "tanh",
        "ENV_NAME": "CartPole-v1",
        "ANNEAL_LR": True,
        "DEBUG": False,
    },
    "dqn": {
        "NUM_ENVS": 10,
        "BUFFER_SIZE": 10_000,
        "BUFFER_BATCH_SIZE": 128,
        "TOTAL_TIMESTEPS": 500_000,
        "EPSILON_START": 1.0,
        "EPSILON_FINISH": 0.05,
        "EPSILON_ANNEAL_TIME": 250_000,
        "TARGET_UPDATE_INTERVAL": 500,
        "LR": 2.5e-4,
        "LEARNING_STARTS": 10_000,
        "TRAINING_INTERVAL": 10,
        "LR_LINEAR_DECAY": False,
        "GAMMA": 0.99,
        "TAU": 1.0,
        "ENV_NAME": "CartPole-v1",
    },
}


def purerl_argv(case: str, total: int) -> tuple[tuple[str, ...], str]:
    run = ("--env", "CartPole-v1", "--total-timesteps", str(total))
    if case == "ppo":
        flags = (
            *("--num-envs", "4", "--num-steps", "128", "--update-epochs", "4"),
            *("--num-minibatches", "4", "--learning-rate", "2.5e-4", "--lr-schedule"),
            *("linear", "--optimizer", "adam(eps=1e-5)", "--max-grad-norm", "0.5"),
            *("--gamma", "0.99", "--gae-lambda", "0.95", "--clip-eps", "0.2", "--ent-coef"),
            *("0.01", "--vf-coef", "0.5", "--clip-value", "--normalize-advantages"),
            *("--activation", "tanh", "--hidden-sizes", "64", "64"),
            *("--kernel-init", "orthogonal", "--no-layer-norm"),
        )
        return ("ppo", *run, *flags), "the same settings on both sides"
    flags = (
        *("--num-envs", "10", "--train-frequency", "1", "--batch-size", "128"),
        *("--buffer-size", "10000", "--learning-starts", "10000", "--learning-rate"),
        *("2.5e-4", "--lr-schedule", "constant", "--optimizer", "adam", "--max-grad-norm"),
        *("0", "--hidden-sizes", "120", "84", "--activation", "relu", "--no-layer-norm"),
        *("--kernel-init", "lecun_normal", "--loss", "mse", "--no-double-q", "--no-dueling"),
        *("--tau", "1.0", "--target-update-period", "50", "--epsilon-start", "1.0"),
        *("--epsilon-end", "0.05", "--epsilon-decay-steps", "250000", "--gamma", "0.99"),
    )
    notes = (
        "PureJaxRL learns every 10 env steps (one vector step of 10 envs) and copies the "
        "target every 500 env steps: purerl's --train-frequency 1 and --target-update-period "
        "50 (updates); its `done` bootstraps no time limit, purerl's does."
    )
    return ("dqn", *run, *flags), notes


def purejaxrl_side(case: str, total: int, checkout: str) -> None:
    """Trains with PureJaxRL's own `make_train` (in its venv) and emits its figures."""
    import jax

    if not hasattr(jax, "tree_map"):
        jax.tree_map = jax.tree.map  # Removed in JAX 0.6; PureJaxRL's dqn.py calls it.
    sys.path.insert(0, str(Path(checkout) / "purejaxrl"))  # Its modules import as top-level.
    module = __import__(case)
    config = dict(CONFIGS[case], TOTAL_TIMESTEPS=total)
    out, compile_s, train_s = timed_jit(module.make_train(config), jax.random.PRNGKey(0))
    if case == "ppo":
        steps = config["NUM_UPDATES"] * config["NUM_STEPS"] * config["NUM_ENVS"]
    else:
        steps = int(out["runner_state"][0].timesteps)
    emit(
        {
            "env_steps": steps,
            "steps_per_second": steps / train_s,
            "compile_seconds": compile_s,
            "versions": f"purejaxrl {_commit(checkout)}, "
            + versions("jax", "flax", "gymnax", "flashbax"),
        }
    )


def _commit(checkout: str) -> str:
    out = subprocess.run(
        ["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip() or "(not a git checkout)"


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.split("\n\n")[0], PEER, list(CONFIGS))
    p.add_argument(
        "--purejaxrl-dir",
        help=f"a checkout of github.com/luchris429/purejaxrl at commit {PINNED_COMMIT[:7]}",
    )
    args = p.parse_args(argv)
    total = args.total_timesteps or CONFIGS[args.case]["TOTAL_TIMESTEPS"]
    if args.peer_side:
        purejaxrl_side(args.case, total, args.purejaxrl_dir)
        return
    if not args.dry_run and not (
        args.purejaxrl_dir and (Path(args.purejaxrl_dir) / "purejaxrl" / "ppo.py").exists()
    ):
        p.error(
            f"--purejaxrl-dir must name a checkout of PureJaxRL (at {PINNED_COMMIT[:7]}) "
            f"holding purejaxrl/ppo.py; got {args.purejaxrl_dir!r}"
        )
    argv_purerl, notes = purerl_argv(args.case, total)
    case = Case(
        name=args.case,
        title=f"purerl vs PureJaxRL: {args.case} on CartPole-v1",
        purerl_argv=argv_purerl,
        peer_args=("--total-timesteps", str(total), "--purejaxrl-dir", str(args.purejaxrl_dir)),
        peer_settings=dict(CONFIGS[args.case], TOTAL_TIMESTEPS=total),
        notes=notes,
    )
    compare(case, PEER, args, __file__)


if __name__ == "__main__":
    main(sys.argv[1:])
