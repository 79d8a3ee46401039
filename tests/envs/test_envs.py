import subprocess
import sys

import chex
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl import envs


@pytest.mark.parametrize(
    "name",
    [
        "CartPole-v1",
        "Acrobot-v1",
        "Pendulum-v1",
        "Breakout-MinAtar",
        "Catch-bsuite",
        "phys2d/CartPole-v1",
        "phys2d/Pendulum-v0",
    ],
)
def test_make_resolves_names_to_the_protocol_with_gymnasium_spaces(name):
    env, params = envs.make(name)
    assert isinstance(env, envs.Environment)
    obs_space, act_space = env.observation_space(params), env.action_space(params)
    assert isinstance(obs_space, gymnasium.spaces.Space)
    assert isinstance(act_space, (gymnasium.spaces.Discrete, gymnasium.spaces.Box))
    vec = envs.VecEnv(env, 3)
    obs, state = jax.jit(vec.reset)(jax.random.PRNGKey(0), params)
    chex.assert_shape(obs, (3,) + obs_space.shape)
    if isinstance(act_space, gymnasium.spaces.Discrete):
        action = jnp.zeros((3,), jnp.int32)
    else:
        action = jnp.zeros((3,) + act_space.shape, jnp.float32)
    obs, state, reward, terminated, truncated, info = jax.jit(vec.step)(
        jax.random.PRNGKey(1), state, action, params
    )
    chex.assert_shape([reward, terminated, truncated], (3,))
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    chex.assert_shape(info["final_observation"], (3,) + obs_space.shape)


def test_unknown_name_lists_what_is_available():
    with pytest.raises(ValueError, match="Unknown environment 'CartPol-v1'") as e:
        envs.make("CartPol-v1")
    assert "Did you mean CartPole-v1" in str(e.value)
    assert "Breakout-MinAtar" in str(e.value) and "phys2d/CartPole-v1" in str(e.value)
    hint = str(e.value).split("Did you mean ")[1].split("?")[0].split(", ")
    assert len(hint) == len(set(hint))  # Each suggestion once,
    assert "gymnasium:CartPole-v0" in hint  # written as it must be given.


def test_a_bare_gymnasium_id_runs_on_the_host_loop_with_a_warning():
    with pytest.warns(UserWarning, match="not a JAX environment.*gymnasium:CartPole-v0"):
        loop, _ = envs.resolve("CartPole-v0")
    assert loop == "host"


def test_bad_module_path_is_a_clear_error():
    with pytest.raises(ValueError, match="Cannot import module"):
        envs.make("no_such_module_xyz:Env")
    with pytest.raises(ValueError, match="has no attribute"):
        envs.make("tests.envs.my_jax_env:NoSuchEnv")


def test_users_own_jax_env_from_module_path():
    env, params = envs.make("tests.envs.my_jax_env:Corridor")
    assert env.action_space(params) == gymnasium.spaces.Discrete(2)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(obs, [1, 0, 0, 0, 0, 0])


def _run_until_done(env, params, action, max_steps=600):
    vec = envs.VecEnv(envs.EpisodeStatistics(env), 2)
    obs, state = vec.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(vec.step)
    key = jax.random.PRNGKey(1)
    for t in range(max_steps):
        key, sub = jax.random.split(key)
        prev_obs = obs
        obs, state, reward, terminated, truncated, info = step(sub, state, action, params)
        if bool(info["episode_done"][0]):
            return t + 1, prev_obs, obs, terminated, truncated, info
    raise AssertionError("episode never ended")


def test_env_params_set_fields_of_a_jax_envs_params_and_refuse_bad_settings():
    resolved = envs.resolve("SpaceInvaders-MinAtar")
    _, (_, params) = envs.with_params(resolved, ["max_steps_in_episode=5000"], "SI")
    assert params.max_steps_in_episode == 5000 and isinstance(params.max_steps_in_episode, int)
    assert params.shot_cool_down == resolved[1][1].shot_cool_down  # The rest as they were.
    # A nested field by its dotted path, each value kept to its field's type.
    settings = ["max_episode_steps=50", "env_params.gravity=3"]
    _, (_, params) = envs.with_params(envs.resolve("phys2d/CartPole-v1"), settings, "p")
    assert params.max_episode_steps == 50 and params.env_params.gravity == 3.0
    assert isinstance(params.env_params.gravity, float)
    for setting, error in [
        ("max_steps=3", "no field 'max_steps'; its fields are max_steps_in_episode,"),
        ("max_steps_in_episode=0.5", "give a whole number"),
        ("max_steps_in_episode=true", "give a whole number"),
        ("max_steps_in_episode", "takes FIELD=VALUE settings"),
    ]:
        with pytest.raises(ValueError, match=error):
            envs.with_params(resolved, [setting], "SpaceInvaders-MinAtar")
    with pytest.raises(ValueError, match="sets max_steps_in_episode more than once"):
        twice = ["max_steps_in_episode=5", " max_steps_in_episode=6"]
        envs.with_params(resolved, twice, "SpaceInvaders-MinAtar")
    with pytest.raises(ValueError, match="host \\(Python\\) environment"):
        envs.with_params(envs.resolve("gymnasium:CartPole-v1"), ["a=1"], "gymnasium:CartPole-v1")


def test_auto_reset_keeps_final_observation_and_marks_truncation():
    env, params = envs.make("CartPole-v1")
    params = params.replace(max_steps_in_episode=5)
    # Alternating pushes keep the pole up for 5 steps: a time limit, not a terminal.
    vec = envs.VecEnv(envs.EpisodeStatistics(env), 2)
    obs, state = vec.reset(jax.random.PRNGKey(0), params)
    key = jax.random.PRNGKey(1)
    for t in range(5):
        key, sub = jax.random.split(key)
        action = jnp.full((2,), t % 2, jnp.int32)
        prev_obs = obs
        obs, state, reward, terminated, truncated, info = vec.step(sub, state, action, params)
    assert bool(truncated[0]) and not bool(terminated[0])
    final = info["final_observation"]
    # The final observation continues the episode (CartPole's Euler step: x' = x + 0.02 x_dot);
    # the returned one starts a new one.
    np.testing.assert_allclose(final[:, 0], prev_obs[:, 0] + 0.02 * prev_obs[:, 1], atol=1e-6)
    np.testing.assert_allclose(final[:, 2], prev_obs[:, 2] + 0.02 * prev_obs[:, 3], atol=1e-6)
    assert not np.allclose(final, obs)
    assert np.all(np.abs(np.asarray(obs)) <= 0.05)  # CartPole resets within +-0.05.
    np.testing.assert_array_equal(info["episode_length"], [5, 5])
    np.testing.assert_array_equal(info["episode_return"], [5.0, 5.0])


def test_termination_is_not_truncation():
    env, params = envs.make("CartPole-v1")
    length, _, obs, terminated, truncated, info = _run_until_done(
        env, params, jnp.ones((2,), jnp.int32)
    )
    assert length < 50  # Always pushing right tips the pole over quickly.
    assert bool(terminated[0]) and not bool(truncated[0])
    assert abs(float(info["final_observation"][0, 2])) > 0.2  # Pole angle past 12 degrees.
    assert float(info["episode_return"][0]) == length


def test_functional_env_time_limit_and_auto_reset():
    env, params = envs.make("phys2d/CartPole-v1", max_episode_steps=4)
    vec = envs.VecEnv(env, 2)
    obs, state = vec.reset(jax.random.PRNGKey(0), params)
    for t in range(4):
        action = jnp.full((2,), t % 2, jnp.int32)
        obs, state, reward, terminated, truncated, info = vec.step(
            jax.random.PRNGKey(t), state, action, params
        )
        assert bool(truncated[0]) == (t == 3)
    assert not bool(terminated[0])
    np.testing.assert_array_equal(state.time, [0, 0])
    assert not np.allclose(info["final_observation"], obs)


def test_functional_cartpole_matches_gymnasiums_own_jax_env():
    env, params = envs.make("phys2d/CartPole-v1")
    reference = gymnasium.make("phys2d/CartPole-v1")
    ref_obs, _ = reference.reset(seed=0)
    # Start both from the reference's state and step them with the same actions.
    state = env.reset(jax.random.PRNGKey(0), params)[1].replace(
        env_state=jnp.asarray(reference.unwrapped.state)
    )
    rng = np.random.default_rng(0)
    for _ in range(30):
        action = int(rng.integers(2))
        ref_obs, ref_r, ref_term, ref_trunc, _ = reference.step(action)
        obs, state, r, term, trunc, info = env.step(jax.random.PRNGKey(0), state, action, params)
        np.testing.assert_allclose(info["final_observation"], ref_obs, atol=1e-4)
        assert float(r) == float(ref_r) and bool(term) == bool(ref_term)
        if ref_term:
            break


def test_observations_lie_in_their_space():
    for name in ["CartPole-v1", "Breakout-MinAtar"]:
        env, params = envs.make(name)
        space = env.observation_space(params)
        obs, _ = env.reset(jax.random.PRNGKey(3), params)
        assert space.contains(np.asarray(obs, dtype=space.dtype))


def test_num_envs_must_be_positive():
    env, _ = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        envs.VecEnv(env, 0)


def test_fast_gymnax_import_leaves_gymnax_whole():
    code = (
        "import sys; from purerl import envs; envs.make('CartPole-v1');"
        "assert 'seaborn' not in sys.modules, 'imported all of gymnax';"
        "import gymnax; env, p = gymnax.make('Catch-bsuite');"
        "from gymnax.environments import EnvParams; print(len(gymnax.registered_envs))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 20


def test_an_env_that_cannot_download_its_data_is_a_clear_error(monkeypatch):
    import urllib.error

    import gymnax

    def offline(name, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(gymnax, "make", offline)
    with pytest.raises(ValueError, match="MNISTBandit-bsuite downloads its data"):
        envs.make("MNISTBandit-bsuite")


def test_envs_with_integer_rewards_train_and_mismatched_actions_are_refused():
    from purerl.experiments.check_envs import check

    # gymnax's bandits and bsuite's UmbrellaChain return int32 rewards: stored as float32.
    for env in ("BernoulliBandit-misc", "UmbrellaChain-bsuite"):
        assert check("dqn", env, 1_000)[0] == "trained"
    outcome, detail = check("sac", "UmbrellaChain-bsuite", 1_000)
    assert outcome == "refused" and "SAC needs a continuous action space" in detail
    outcome, detail = check("rainbow", "Pendulum-v1", 1_000)
    assert outcome == "refused" and "Rainbow needs a discrete action space" in detail


def test_reward_scaling_divides_by_the_std_of_discounted_returns_on_both_loops():
    from purerl.envs.wrappers import EpisodeStatistics, HostRewardScale, ScaleReward, VecEnv

    env, params = envs.make("CartPole-v1")
    vec = ScaleReward(VecEnv(EpisodeStatistics(env), 3), gamma=0.9)
    obs, state = vec.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(vec.step)
    host = HostRewardScale(3, gamma=0.9)
    returns, seen, ends = np.zeros(3), [], 0
    for t in range(30):
        action = jnp.zeros((3,), jnp.int32)  # Always left: episodes end within ~10 steps.
        obs, state, scaled, term, trunc, info = step(jax.random.PRNGKey(t), state, action, params)
        raw = np.ones(3)  # CartPole pays 1 per step.
        returns = returns * 0.9 + raw
        seen.append(returns.copy())
        expected = raw / np.sqrt(np.var(np.concatenate(seen)) + 1e-8)
        np.testing.assert_allclose(scaled, np.clip(expected, -10, 10), rtol=1e-4)
        np.testing.assert_allclose(host(raw, np.asarray(term | trunc)), scaled, rtol=1e-4)
        returns = np.where(np.asarray(term | trunc), 0.0, returns)
        ends += int(np.sum(term | trunc))
        # Logged returns stay unscaled.
        assert np.all(np.asarray(info["episode_return"]) == np.floor(info["episode_return"]))
    np.testing.assert_allclose(state.returns, returns, rtol=1e-5)  # Reset where episodes ended,
    assert float(state.stats.count) == 90 and ends >= 3
    copy = HostRewardScale(3, gamma=0.9)
    copy.load(host.state())
    assert (
        copy(np.ones(3), np.zeros(3, bool)).tolist() == host(np.ones(3), np.zeros(3, bool)).tolist()
    )
