"""purerl environments: the JAX protocol (gymnax 1.0's), adapters, wrappers and `make`."""

from purerl.envs.base import Environment, env_spec
from purerl.envs.functional import FunctionalEnv
from purerl.envs.gymnax_env import GymnaxEnv
from purerl.envs.host import DmEnvAdapter, HostEnvError, HostVecEnv
from purerl.envs.registry import (
    available,
    host_vec_env,
    make,
    make_host,
    resolve,
    spec,
    with_params,
)
from purerl.envs.wrappers import EpisodeStatistics, VecEnv, Wrapper

__all__ = [
    "DmEnvAdapter",
    "HostEnvError",
    "HostVecEnv",
    "make_host",
    "host_vec_env",
    "resolve",
    "spec",
    "Environment",
    "EpisodeStatistics",
    "FunctionalEnv",
    "GymnaxEnv",
    "VecEnv",
    "Wrapper",
    "available",
    "env_spec",
    "make",
    "with_params",
]
