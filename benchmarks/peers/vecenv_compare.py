"""purerl's host loop against a bare Gymnasium `SyncVectorEnv` loop, both stepping the same
Python environments with uniformly random actions, alternating rounds in one run; prints env
steps/s and wall time for each side and their ratio: what purerl's loop adds to each env step.

    python benchmarks/peers/vecenv_compare.py cartpole-8 --rounds 3   # 8 CartPole-v1 envs
    python benchmarks/peers/vecenv_compare.py cartpole-1              # one env
    python benchmarks/peers/vecenv_compare.py cartpole-64             # 64 envs
    python benchmarks/peers/vecenv_compare.py cartpole-8 --dry-run    # print the settings only

Both sides run in purerl's own venv (the bare side needs only Gymnasium). The bare side is
`SyncVectorEnv` (same-step auto-reset, as purerl's) and `envs.step(envs.action_space.sample())`
in a Python loop. purerl's side is DQN on `gymnasium:CartPole-v1` that never starts learning
(`--learning-starts` past the run's end), so every action is a uniform warm-up action and
each step pays only the loop: the jitted `act` (which draws the random actions), the env
step and episode statistics, and once per 128 vector steps (`--train-frequency`) the hand-off
of the rollout to the learner, which stores it in the replay buffer.
"""

from __future__ import annotations

import sys
import time

from common import Case, compare, emit, parser, versions

PEER = "gymnasium"
ENV = "CartPole-v1"
NUM_ENVS = {"cartpole-1": 1, "cartpole-8": 8, "cartpole-64": 64}
TOTAL = 200_000
# Vector steps per hand-off to the learner (which, never learning, only stores the steps):
# PPO's usual rollout length, so the figure is the per-step cost of acting and stepping.
TRAIN_FREQUENCY = 128


def purerl_argv(num_envs: int, total: int) -> tuple[str, ...]:
    return (
        *("dqn", "--env", f"gymnasium:{ENV}", "--total-timesteps", str(total)),
        *("--num-envs", str(num_envs), "--learning-starts", str(2 * total)),
        *("--buffer-size", str(2 * total), "--train-frequency", str(TRAIN_FREQUENCY)),
    )


def gymnasium_side(num_envs: int, total: int) -> None:
    """Steps a bare `SyncVectorEnv` with random actions and emits its figures."""
    import gymnasium

    start = time.perf_counter()
    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: gymnasium.make(ENV)] * num_envs,
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP,
    )
    envs.reset(seed=0)
    envs.action_space.seed(0)
    built = time.perf_counter()
    steps = 0
    while steps < total:
        envs.step(envs.action_space.sample())
        steps += num_envs
    train_s = time.perf_counter() - built
    emit(
        {
            "env_steps": steps,
            "steps_per_second": steps / train_s,
            "compile_seconds": built - start,
            "versions": versions("gymnasium", "numpy"),
        }
    )


def main(argv: list[str] | None = None) -> None:
    description = __doc__.split("\n\n")[0]
    args = parser(description, PEER, list(NUM_ENVS), peer_python=sys.executable).parse_args(argv)
    total, num_envs = args.total_timesteps or TOTAL, NUM_ENVS[args.case]
    if args.peer_side:
        gymnasium_side(num_envs, total)
        return
    case = Case(
        name=args.case,
        title=f"purerl's host loop vs a bare SyncVectorEnv loop: {num_envs} x {ENV}, "
        "random actions",
        purerl_argv=purerl_argv(num_envs, total),
        peer_args=("--total-timesteps", str(total)),
        peer_settings=dict(
            env=ENV, num_envs=num_envs, total_timesteps=total, actions="action_space.sample()"
        ),
        notes="the bare side's compile seconds are building and resetting its envs",
    )
    compare(case, PEER, args, __file__)


if __name__ == "__main__":
    main(sys.argv[1:])
