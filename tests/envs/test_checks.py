"""A user's environment that returns other shapes than its spaces declare gets one clear
error naming it and both shapes, from its first reset or step, for host (Gymnasium) and JAX
environments alike."""

import re

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium import spaces
from purerl import envs
from purerl.envs.checks import EnvCheckError, check_jax_env, check_observation

from tests.envs.my_jax_env import Corridor

# Host (Gymnasium) environments ------------------------------------------------------


class StepShape(gymnasium.Env):
    """Declares observations of shape (1,); its steps return (3,)."""

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


class ResetShape(StepShape):
    def reset(self, *, seed=None, options=None):
        return np.zeros((2, 2), np.float32), {}


class DictLeafShape(gymnasium.Env):
    observation_space = spaces.Dict({"x": spaces.Box(-1.0, 1.0, (2,), np.float32)})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return {"x": np.zeros(5, np.float32)}, {}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_host_env_stepping_the_wrong_shape_is_named_with_both_shapes(mode):
    vec = envs.make_host("tests.envs.test_checks:StepShape", 2, mode=mode)
    try:
        vec.reset(0)
        with pytest.raises(ValueError) as e:
            vec.step(np.zeros(2, np.int64))
    finally:
        vec.close()
    assert "tests.envs.test_checks:StepShape: step returned observation shape (3,), " in str(e)
    assert "observation_space is (1,)" in str(e)


@pytest.mark.parametrize(
    "name, message",
    [
        ("ResetShape", "ResetShape: reset returned observation shape (2, 2), observation_space "),
        ("DictLeafShape", "reset returned observation['x'] shape (5,), observation_space['x'] is"),
    ],
)
def test_a_host_env_resetting_the_wrong_shape_is_named(name, message):
    vec = envs.make_host(f"tests.envs.test_checks:{name}", 2)
    try:
        with pytest.raises(ValueError, match=re.escape(message)):
            vec.reset(0)
    finally:
        vec.close()


def test_good_host_envs_pass_and_later_steps_are_not_checked():
    vec = envs.make_host("tests.envs.my_host_envs:DictObs", 2)  # Structured, flattened.
    try:
        obs = vec.reset(0)
        for _ in range(3):
            obs, *_ = vec.step(np.zeros(2, np.int64))
        assert obs.shape == (2, 2 + 3 + 5)
    finally:
        vec.close()
    check_observation({"k": 1, "x": np.zeros(2), "m": np.zeros(2)}, DictObsSpace, "d", "reset")
    with pytest.raises(EnvCheckError, match=r"d: reset returned observation with keys \['x'\], "):
        check_observation({"x": np.zeros(2)}, DictObsSpace, "d", "reset")


DictObsSpace = spaces.Dict(
    {"x": spaces.Box(-1.0, 1.0, (2,)), "k": spaces.Discrete(3), "m": spaces.MultiDiscrete([2, 3])}
)


# JAX environments -------------------------------------------------------------------


class WideStep(Corridor):
    """Corridor (observations of length 6) whose steps return 3 more entries."""

    def step(self, key, state, action, params):
        obs, *rest = super().step(key, state, action, params)
        return jnp.concatenate([obs, jnp.zeros(3)]), *rest


class WrongReset(Corridor):
    def observation_space(self, params):
        return gymnasium.spaces.Box(0.0, 1.0, (1,), jnp.float32)


class FloatClock(Corridor):
    """Its step turns the state's int32 step counter into a float."""

    def step(self, key, state, action, params):
        obs, state, *rest = super().step(key, state, action, params)
        return obs, state.replace(time=state.time.astype(jnp.float32)), *rest


class IntegerStep(Corridor):
    """Its reset's observations are float32, its step's int32: a different scan carry."""

    def step(self, key, state, action, params):
        obs, *rest = super().step(key, state, action, params)
        return obs.astype(jnp.int32), *rest


class NoFinalObservation(Corridor):
    def step(self, key, state, action, params):
        *rest, info = super().step(key, state, action, params)
        return *rest, {}


class BatchedReward(Corridor):
    def step(self, key, state, action, params):
        obs, state, reward, *rest = super().step(key, state, action, params)
        return obs, state, jnp.stack([reward, reward]), *rest


@pytest.mark.parametrize(
    "name, message",
    [
        ("WideStep", "WideStep: step returned observation shape (9,), observation_space is (6,)"),
        ("WrongReset", "WrongReset: reset returned observation shape (6,), observation_space is"),
        ("FloatClock", "FloatClock: step returned state.time of shape () and dtype float32; "),
        ("IntegerStep", "IntegerStep: step returned observation of shape (6,) and dtype int32; "),
        ("NoFinalObservation", "NoFinalObservation: step's info has no 'final_observation'"),
        ("BatchedReward", "BatchedReward: step returned reward shape (2,); it must be a scalar"),
    ],
)
def test_a_jax_env_returning_other_shapes_is_refused_when_made(name, message):
    with pytest.raises(ValueError) as e:
        envs.make(f"tests.envs.test_checks:{name}")
    assert message in str(e.value)


def test_a_jax_env_is_checked_with_the_params_it_is_given():
    class FixedSpace(Corridor):  # Its space ignores the length its observations have.
        def observation_space(self, params):
            return gymnasium.spaces.Box(0.0, 1.0, (6,), jnp.float32)

    env, params = FixedSpace(), Corridor().default_params
    check_jax_env(env, params, "fixed")  # Length 5: observations of 6, as declared.
    with pytest.raises(EnvCheckError, match=r"reset returned observation shape \(8,\)"):
        check_jax_env(env, params.replace(length=7), "fixed")


def test_the_check_traces_and_never_runs_the_env():
    calls = []

    class Counting(Corridor):
        def step(self, key, state, action, params):
            calls.append(isinstance(action, jax.core.Tracer))
            return super().step(key, state, action, params)

    check_jax_env(Counting(), Corridor().default_params, "counting")
    assert calls == [True]
    env, params = envs.make("tests.envs.my_jax_env:Corridor")  # A good env passes.
    check_jax_env(env, params, "corridor")
