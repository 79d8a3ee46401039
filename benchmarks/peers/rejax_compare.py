"""purerl against Rejax (pip `rejax`), both fully jitted on gymnax environments, alternating
rounds in one run; prints env steps/s and wall time for each side and their ratio.

    python benchmarks/peers/rejax_compare.py ppo --rounds 3      # equal settings
    python benchmarks/peers/rejax_compare.py ppo-defaults        # each at its defaults
    python benchmarks/peers/rejax_compare.py ppo-warm            # ... purerl's cache warm
    python benchmarks/peers/rejax_compare.py {dqn,sac,td3}       # Rejax's settings on both
    python benchmarks/peers/rejax_compare.py ppo --dry-run       # print the settings only

Run it with purerl's Python; the Rejax side runs in its own venv (`--peer-python`, see
README.md). Rejax evaluates 128 episodes every `eval_freq` steps inside its training
program; that is turned off here (one training chunk, a no-op evaluation), as purerl
evaluates nothing by default, so both sides time training alone. Rejax's figures are its
`train` compiled ahead (`jit(...).lower(...).compile()`) and then run, the split purerl's
summary makes between compile and train seconds.

`ppo-warm` is a user's second run of the default PPO: `purerl ppo --env CartPole-v1` as it
is (its run directory with the plot, TensorBoard and checkpoint; no flags but the steps)
with its compile cache filled by a first run that is not timed, against Rejax's default PPO
(which keeps no compile cache); what counts is the whole process's wall time.
"""

from __future__ import annotations

import sys

from common import PURERL_RUN_FLAGS, Case, compare, emit, parser, timed_jit, versions

PEER = "rejax"
# Rejax's own settings for these envs: configs/gymnax/cartpole.yaml and pendulum.yaml of its
# repository, as `Algorithm.create(**config)` takes them (eval_freq left out: see above).
REJAX_CONFIGS = {
    "ppo": dict(
        env="CartPole-v1",
        agent_kwargs=dict(activation="tanh"),
        num_envs=5,
        num_steps=100,
        num_epochs=5,
        num_minibatches=5,
        learning_rate=0.00075,
        max_grad_norm=0.5,
        gamma=0.99,
        gae_lambda=0.95,
        clip_eps=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
    ),
    "ppo-defaults": dict(env="CartPole-v1"),
    "ppo-warm": dict(env="CartPole-v1"),
    "dqn": dict(
        env="CartPole-v1",
        agent="DuelingQNetwork",
        agent_kwargs=dict(activation="swish"),
        num_envs=10,
        buffer_size=50_000,
        fill_buffer=5_000,
        batch_size=100,
        max_grad_norm=10,
        learning_rate=0.001,
        num_epochs=5,
        polyak=0.98,
        eps_start=1,
        eps_end=0.05,
        exploration_fraction=0.5,
        gamma=0.99,
        ddqn=True,
        normalize_observations=False,
    ),
    "sac": dict(
        env="Pendulum-v1",
        agent_kwargs=dict(activation="swish"),
        num_envs=1,
        buffer_size=10_000,
        fill_buffer=256,
        batch_size=256,
        learning_rate=0.01,
        num_epochs=1,
        gamma=0.99,
        polyak=0.98,
        target_entropy_ratio=None,
        normalize_observations=True,
    ),
    "td3": dict(
        env="Pendulum-v1",
        actor_kwargs=dict(activation="swish"),
        critic_kwargs=dict(activation="swish"),
        num_envs=1,
        buffer_size=10_000,
        fill_buffer=1000,
        batch_size=100,
        learning_rate=0.001,
        num_epochs=1,
        gamma=0.99,
        polyak=0.95,
        max_grad_norm=100,
        exploration_noise=0.3,
        target_noise=0.2,
        target_noise_clip=0.5,
        policy_delay=2,
        normalize_observations=True,
    ),
}
# Env steps per run where --total-timesteps is not given: Rejax's config's budget, but
# 500k for PPO (Rejax's 100k CartPole run trains for under a second here, too short to time).
TOTALS = {"ppo": 500_000, "ppo-defaults": 500_000, "ppo-warm": 500_000}
TOTALS |= {"dqn": 100_000, "sac": 10_000, "td3": 10_000}
# Rejax's networks: Flax `Dense` layers (LeCun-normal kernels) of 64 and 64 units.
MLP_64 = ("--hidden-sizes", "64", "64", "--kernel-init", "lecun_normal", "--no-layer-norm")


def purerl_argv(case: str, total: int) -> tuple[tuple[str, ...], str]:
    """The purerl command that matches Rejax's settings for `case`, and what stays unequal."""
    run = ("--env", REJAX_CONFIGS[case]["env"], "--total-timesteps", str(total))
    if case == "ppo-defaults":
        return ("ppo", *run), "each side at its own defaults (purerl's are tuned for CartPole)"
    if case == "ppo-warm":
        notes = "each side at its own defaults; purerl writes its whole run directory"
        return ("ppo", *run), notes
    if case == "ppo":
        flags = (
            *("--num-envs", "5", "--num-steps", "100", "--update-epochs", "5"),
            *("--num-minibatches", "5", "--learning-rate", "0.00075", "--lr-schedule"),
            *("constant", "--optimizer", "adam", "--max-grad-norm", "0.5", "--activation"),
            *("tanh", "--gamma", "0.99", "--gae-lambda", "0.95", "--clip-eps", "0.2"),
            *("--ent-coef", "0.01", "--vf-coef", "0.5", "--clip-value"),
            *("--normalize-advantages", *MLP_64),
        )
        notes = (
            "Rejax clips each gradient element to 0.5 (optax.clip) where purerl clips the "
            "global norm to 0.5; Rejax's actor and critic have an Adam each."
        )
        return ("ppo", *run, *flags), notes
    if case == "dqn":
        flags = (
            *("--dueling", "--double-q", "--activation", "silu", *MLP_64),
            *("--num-envs", "2", "--train-frequency", "1", "--batch-size", "100"),
            *("--buffer-size", "50000", "--learning-starts", "5000", "--loss", "mse"),
            *("--learning-rate", "0.001", "--lr-schedule", "constant", "--optimizer", "adam"),
            *("--max-grad-norm", "10", "--tau", "0.02", "--target-update-period", "1"),
            *("--epsilon-start", "1", "--epsilon-end", "0.05"),
            *("--epsilon-decay-steps", str(total // 2), "--gamma", "0.99"),
        )
        notes = (
            "Rejax steps 10 envs then takes 5 gradient steps; purerl takes one gradient step "
            "per update, so it steps 2 envs per update: the same 1 gradient step (batch 100) "
            "per 2 env steps. purerl's Polyak step (0.02) then follows every gradient step, "
            "Rejax's every 5th. Rejax clips each gradient element to 10, purerl the global norm."
        )
        return ("dqn", *run, *flags), notes
    if case == "sac":
        flags = (
            *("--activation", "silu", *MLP_64, "--num-envs", "1", "--buffer-size", "10000"),
            *("--learning-starts", "256", "--batch-size", "256", "--gamma", "0.99"),
            *("--actor-learning-rate", "0.01", "--critic-learning-rate", "0.01"),
            *("--alpha-learning-rate", "0.01", "--tau", "0.02", "--train-frequency", "1"),
            *("--gradient-steps", "1", "--max-grad-norm", "0", "--normalize-observations"),
        )
        return ("sac", *run, *flags), "target entropy -1 (minus the action size) on both"
    flags = (
        *("--activation", "silu", *MLP_64, "--num-envs", "1", "--buffer-size", "10000"),
        *("--learning-starts", "1000", "--batch-size", "100", "--gamma", "0.99"),
        *("--actor-learning-rate", "0.001", "--critic-learning-rate", "0.001"),
        *("--tau", "0.05", "--max-grad-norm", "100", "--exploration-noise", "0.3"),
        *("--target-noise", "0.2", "--target-noise-clip", "0.5", "--policy-delay", "2"),
        *("--train-frequency", "1", "--gradient-steps", "1", "--normalize-observations"),
    )
    notes = (
        "both take one critic step per env step and one policy step (and Polyak step) per "
        "two; Rejax clips each gradient element to 100, purerl the global norm"
    )
    return ("td3", *run, *flags), notes


def rejax_side(case: str, total: int) -> None:
    """Trains with Rejax (in Rejax's venv) and emits its figures."""
    import jax
    import rejax

    algo_name = "ppo" if case.startswith("ppo") else case
    config = dict(REJAX_CONFIGS[case], total_timesteps=total, eval_freq=total)
    algo = rejax.get_algo(algo_name).create(**config, skip_initial_evaluation=True)
    algo = algo.replace(eval_callback=lambda algo, ts, rng: ())
    (ts, _), compile_s, train_s = timed_jit(algo.train, jax.random.PRNGKey(0))
    steps = int(ts.global_step)
    emit(
        {
            "env_steps": steps,
            "steps_per_second": steps / train_s,
            "compile_seconds": compile_s,
            "versions": versions("rejax", "jax", "flax", "gymnax"),
        }
    )


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.split("\n\n")[0], PEER, list(REJAX_CONFIGS)).parse_args(argv)
    total = args.total_timesteps or TOTALS[args.case]
    if args.peer_side:
        rejax_side(args.case, total)
        return
    argv_purerl, notes = purerl_argv(args.case, total)
    settings = dict(REJAX_CONFIGS[args.case], total_timesteps=total, evaluation="off")
    case = Case(
        name=args.case,
        title=f"purerl vs Rejax: {args.case} on {REJAX_CONFIGS[args.case]['env']}",
        purerl_argv=argv_purerl,
        peer_args=("--total-timesteps", str(total)),
        peer_settings=settings,
        notes=notes,
        purerl_run_flags=() if args.case == "ppo-warm" else PURERL_RUN_FLAGS,
        warm_compile_cache=args.case == "ppo-warm",
    )
    compare(case, PEER, args, __file__)


if __name__ == "__main__":
    main(sys.argv[1:])
