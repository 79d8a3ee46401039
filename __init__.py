"""purerl: reinforcement-learning agents as pure JAX functions."""

__version__ = "0.1.0"


def load_policy(run_dir, seed_index: int = 0):
    """A trained run's deterministic policy, `policy(obs[B, ...], key) -> action[B]`, jitted.

    See `purerl.experiments.policy.load_policy`.
    """
    from purerl.experiments.policy import load_policy as _load_policy

    return _load_policy(run_dir, seed_index)
