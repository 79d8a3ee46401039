"""purerl against SBX (pip `sbx-rl`, Stable-Baselines3 in JAX), both stepping Gymnasium's
Python environments on the host, at equal settings, alternating rounds in one run; prints
env steps/s and wall time for each side and their ratio.

    python benchmarks/peers/sbx_compare.py ppo --rounds 3    # gymnasium CartPole-v1
    python benchmarks/peers/sbx_compare.py sac --rounds 3    # gymnasium Pendulum-v1
    python benchmarks/peers/sbx_compare.py ppo --dry-run     # print the settings only

Run it with purerl's Python; the SBX side runs in its own venv (`--peer-python`, see
README.md). SBX compiles lazily inside `learn`, so its side first trains for a moment (one
rollout; for SAC, just past `learning_starts`) to compile, reported as its compile seconds,
then times a second `learn` of the same model from step 0 (`reset_num_timesteps=True`: the
envs reset and, for SAC, random actions again until `learning_starts`; a fresh model would
compile again). purerl's side is `purerl AGENT --env gymnasium:ID`, the host loop.
"""

from __future__ import annotations

import sys
import time

from common import Case, compare, emit, parser, versions

PEER = "sbx"
ENVS = {"ppo": "CartPole-v1", "sac": "Pendulum-v1"}
TOTALS = {"ppo": 100_000, "sac": 10_000}
# The settings both sides use: purerl's PPO defaults (with a constant learning rate, which
# SBX's PPO takes as it is) and purerl's SAC defaults, which are close to SB3's.
PPO = dict(
    n_envs=8,
    n_steps=64,
    batch_size=128,  # 8 x 64 / 4 minibatches.
    n_epochs=4,
    learning_rate=2.5e-4,
    gamma=0.99,
    gae_lambda=0.95,
    clip_range=0.2,
    clip_range_vf=0.2,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
    normalize_advantage=True,
    policy_kwargs=dict(net_arch=[64, 64], activation="tanh", ortho_init=True),
)
SAC = dict(
    n_envs=1,
    buffer_size=100_000,
    learning_starts=1000,
    batch_size=256,
    learning_rate=1e-3,
    tau=0.005,
    gamma=0.99,
    train_freq=1,
    gradient_steps=1,
    ent_coef="auto",
    policy_kwargs=dict(net_arch=[256, 256], activation="relu"),
)
SETTINGS = {"ppo": PPO, "sac": SAC}


def purerl_argv(case: str, total: int) -> tuple[tuple[str, ...], str]:
    run = ("--env", f"gymnasium:{ENVS[case]}", "--total-timesteps", str(total))
    if case == "ppo":
        flags = (
            *("--num-envs", "8", "--num-steps", "64", "--update-epochs", "4"),
            *("--num-minibatches", "4", "--learning-rate", "2.5e-4", "--lr-schedule"),
            *("constant", "--optimizer", "adam(eps=1e-5)", "--gamma", "0.99"),
            *("--gae-lambda", "0.95", "--clip-eps", "0.2", "--clip-value", "--ent-coef"),
            *("0.01", "--vf-coef", "0.5", "--max-grad-norm", "0.5"),
            *("--normalize-advantages", "--hidden-sizes", "64", "64", "--activation", "tanh"),
            *("--kernel-init", "orthogonal"),
        )
        notes = (
            "SBX steps SB3's DummyVecEnv, purerl Gymnasium's SyncVectorEnv; purerl's actor "
            "and learner alternate (--max-staleness 0, its on-policy default)."
        )
        return ("ppo", *run, *flags), notes
    flags = (
        *("--num-envs", "1", "--buffer-size", "100000", "--learning-starts", "1000"),
        *("--batch-size", "256", "--actor-learning-rate", "1e-3", "--critic-learning-rate"),
        *("1e-3", "--alpha-learning-rate", "1e-3", "--tau", "0.005", "--gamma", "0.99"),
        *("--train-frequency", "1", "--gradient-steps", "1", "--hidden-sizes", "256", "256"),
        *("--activation", "relu", "--init-alpha", "1.0", "--autotune-alpha"),
    )
    notes = (
        "purerl's host loop may act one update ahead of the learner for replay agents "
        "(--max-staleness 1, its default); SBX alternates."
    )
    return ("sac", *run, *flags), notes


def sbx_side(case: str, total: int) -> None:
    """Trains with SBX (in SBX's venv) and emits its figures."""
    import flax.linen as nn
    import jax
    from sbx import PPO as SbxPPO
    from sbx import SAC as SbxSAC
    from stable_baselines3.common.env_util import make_vec_env

    settings = dict(SETTINGS[case])
    n_envs = settings.pop("n_envs")
    policy_kwargs = dict(settings.pop("policy_kwargs"))
    policy_kwargs["activation_fn"] = getattr(nn, policy_kwargs.pop("activation"))
    algo = SbxPPO if case == "ppo" else SbxSAC

    env = make_vec_env(ENVS[case], n_envs=n_envs, seed=0)
    timed = algo("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=0, **settings)
    warmup = PPO["n_envs"] * PPO["n_steps"] if case == "ppo" else SAC["learning_starts"] + 64
    start = time.perf_counter()
    timed.learn(warmup)  # Compiles SBX's jitted steps.
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    timed.learn(total, reset_num_timesteps=True)
    train_s = time.perf_counter() - start
    emit(
        {
            "env_steps": int(timed.num_timesteps),
            "steps_per_second": timed.num_timesteps / train_s,
            "compile_seconds": compile_s,
            "versions": versions("sbx-rl", "stable_baselines3", "jax", "flax", "gymnasium"),
            "devices": str(jax.devices()[0].platform),
        }
    )


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.split("\n\n")[0], PEER, list(ENVS)).parse_args(argv)
    total = args.total_timesteps or TOTALS[args.case]
    if args.peer_side:
        sbx_side(args.case, total)
        return
    argv_purerl, notes = purerl_argv(args.case, total)
    case = Case(
        name=args.case,
        title=f"purerl vs SBX: {args.case} on gymnasium {ENVS[args.case]} (host loop)",
        purerl_argv=argv_purerl,
        peer_args=("--total-timesteps", str(total)),
        peer_settings=dict(SETTINGS[args.case], env=ENVS[args.case], total_timesteps=total),
        notes=notes,
    )
    compare(case, PEER, args, __file__)


if __name__ == "__main__":
    main(sys.argv[1:])
