"""Host (Python) environments: the Gymnasium and dm_env adapters step in lock-step with the
raw environments, structured observations flatten, unsupported spaces are refused."""

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from purerl import envs
from purerl.envs.host import DmEnvAdapter

from tests.envs import my_host_envs


def raw_gymnasium_steps(env_id, num_envs, seed, actions, **kwargs):
    """What the raw envs do: reset with seed + i, step, reset (unseeded) after an end."""
    raw = [gymnasium.make(env_id, **kwargs) for _ in range(num_envs)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(raw)])
    out = []
    for action in actions:
        step = [e.step(a) for e, a in zip(raw, action, strict=True)]
        final = np.stack([s[0] for s in step])
        reward = np.array([s[1] for s in step], np.float32)
        terminated = np.array([s[2] for s in step])
        truncated = np.array([s[3] for s in step])
        nxt = final.copy()
        for i, e in enumerate(raw):
            if terminated[i] or truncated[i]:
                nxt[i] = e.reset()[0]
        out.append((obs, reward, terminated, truncated, final))
        obs = nxt
    return out


def test_gymnasium_adapter_steps_in_lock_step_with_the_raw_env():
    num_envs, steps = 3, 300
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, (steps, num_envs))
    # A short time limit, so the run holds both terminations and truncations.
    vec = envs.make_host("gymnasium:CartPole-v1", num_envs, max_episode_steps=30)
    obs = vec.reset(seed=5)
    expected = raw_gymnasium_steps("CartPole-v1", num_envs, 5, actions, max_episode_steps=30)
    seen_terminated = seen_truncated = False
    for action, (want_obs, reward, terminated, truncated, final) in zip(
        actions, expected, strict=True
    ):
        np.testing.assert_array_equal(obs, want_obs)
        obs, r, te, tr, final_obs, _, _, done = vec.step(action)
        np.testing.assert_array_equal(r, reward)
        np.testing.assert_array_equal(te, terminated)
        np.testing.assert_array_equal(tr, truncated)
        np.testing.assert_array_equal(final_obs, final)
        np.testing.assert_array_equal(done, terminated | truncated)
        seen_terminated |= te.any()
        seen_truncated |= tr.any()
    assert seen_terminated and seen_truncated
    vec.close()


def test_episode_statistics_count_whole_episodes():
    vec = envs.make_host("gymnasium:CartPole-v1", 2, max_episode_steps=10)
    vec.reset(seed=0)
    ended = []
    for _ in range(40):
        *_, ended_return, ended_length, done = vec.step(np.ones(2, np.int64))
        ended += [(ended_return[i], ended_length[i]) for i in np.flatnonzero(done)]
    assert ended and all(r == length for r, length in ended)  # CartPole pays 1 a step.
    assert all(1 <= length <= 10 for _, length in ended)


def test_dm_env_adapter_steps_in_lock_step_with_the_raw_env():
    rng = np.random.default_rng(1)
    actions = rng.integers(0, 2, 200)
    raw = my_host_envs.Catch(seed=3)
    adapted = DmEnvAdapter(my_host_envs.Catch(seed=3))
    assert adapted.observation_space == spaces.Dict(
        {"hint": spaces.Box(-np.inf, np.inf, (1,), np.float32)}
    )
    assert adapted.action_space == spaces.Discrete(2)
    timestep = raw.reset()
    obs, _ = adapted.reset()
    kinds = set()
    for action in actions:
        if timestep.last():
            timestep = raw.reset()
            obs, _ = adapted.reset()
        np.testing.assert_array_equal(obs["hint"], timestep.observation["hint"])
        timestep = raw.step(action)
        obs, reward, terminated, truncated, _ = adapted.step(action)
        assert reward == timestep.reward
        np.testing.assert_array_equal(obs["hint"], timestep.observation["hint"])
        # LAST with discount 0 is a termination; LAST with discount 1 a time limit.
        assert terminated == (timestep.last() and timestep.discount == 0.0)
        assert truncated == (timestep.last() and timestep.discount == 1.0)
        kinds.add((terminated, truncated))
    assert kinds == {(False, False), (True, False), (False, True)}


def test_dm_env_runs_as_a_vectorised_host_env():
    vec = envs.make_host("tests.envs.my_host_envs:Catch", 4)
    assert vec.spec.observation_space.shape == (1,)
    obs = vec.reset(seed=0)
    assert obs.shape == (4, 1) and obs.dtype == np.float32
    *_, done = vec.step(np.zeros(4, np.int64))
    assert done.shape == (4,)


def test_structured_observations_flatten_into_one_float_vector():
    vec = envs.make_host("tests.envs.my_host_envs:DictObs", 3)
    # Box(2) + one-hot Discrete(3) + one-hot MultiDiscrete([2, 3]).
    assert vec.spec.observation_space == spaces.Box(
        vec.spec.observation_space.low, vec.spec.observation_space.high, (10,), np.float32
    )
    obs = vec.reset(seed=0)
    raw = my_host_envs.DictObs()
    raw_obs, _ = raw.reset(seed=0)
    flat = spaces.flatten(raw.observation_space, raw_obs).astype(np.float32)
    np.testing.assert_array_equal(obs[0], flat)
    for _ in range(6):
        obs, *_, final, _, _, done = vec.step(np.ones(3, np.int64))
        assert obs.shape == final.shape == (3, 10)
    assert envs.spec("tests.envs.my_host_envs:DictObs") == vec.spec


@pytest.mark.parametrize(
    "name, message",
    [
        ("tests.envs.my_host_envs:TextObs", "Text space"),
        ("tests.envs.my_host_envs:MultiBinaryActions", "action space MultiBinary"),
    ],
)
def test_unsupported_spaces_are_a_clear_error(name, message):
    with pytest.raises(ValueError, match=message):
        envs.make_host(name, 2)


def test_names_choose_the_loop():
    assert envs.resolve("CartPole-v1")[0] == "device"
    assert envs.resolve("gymnasium:CartPole-v1")[0] == "host"
    assert envs.resolve("tests.envs.my_host_envs:Catch")[0] == "host"
    assert envs.resolve("tests.envs.my_jax_env:Corridor")[0] == "device"
    with pytest.raises(ValueError, match="Did you mean gymnasium:CartPole-v1"):
        envs.resolve("gymnasium:CartPol-v1")
    with pytest.raises(ValueError, match="host loop"):
        envs.make("gymnasium:CartPole-v1")
    with pytest.raises(ValueError, match="class or a factory"):
        envs.resolve("tests.envs.my_host_envs:INSTANCE")


def test_an_env_that_raises_names_itself_and_the_step(monkeypatch):
    monkeypatch.setenv("PURERL_TEST_EXPLODE_AT", "7")
    my_host_envs.Exploding.steps = 0
    vec = envs.make_host("tests.envs.my_host_envs:Exploding", 2)
    vec.reset(seed=0)
    vec.step(np.zeros(2, np.int64))
    vec.step(np.zeros(2, np.int64))
    vec.step(np.zeros(2, np.int64))
    message = r"my_host_envs:Exploding raised in step 3.*crashed"
    with pytest.raises(envs.HostEnvError, match=message):
        vec.step(np.zeros(2, np.int64))


def test_async_envs_match_sync_envs():
    sync = envs.make_host("gymnasium:CartPole-v1", 2)
    asyn = envs.make_host("gymnasium:CartPole-v1", 2, mode="async")
    try:
        np.testing.assert_array_equal(sync.reset(seed=1), asyn.reset(seed=1))
        for a in np.random.default_rng(0).integers(0, 2, (30, 2)):
            for x, y in zip(sync.step(a), asyn.step(a), strict=True):
                np.testing.assert_array_equal(x, y)
    finally:
        sync.close()
        asyn.close()
