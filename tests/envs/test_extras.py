"""The optional environment extras: Brax on the device loop, MuJoCo through Gymnasium on the
host loop. Each test skips only when its extra is not installed."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl import envs
from purerl.experiments.engine.config import RunConfig


def test_brax_env_truncates_resets_and_keeps_the_final_observation():
    pytest.importorskip("brax")
    env, params = envs.make("brax:inverted_pendulum")
    assert env.action_space(params).shape == (1,) and env.observation_space(params).shape == (4,)
    params = params.replace(max_steps=3)
    obs, state = jax.jit(env.reset)(jax.random.PRNGKey(0), params)
    step = jax.jit(env.step)
    for t in range(1, 4):
        last = obs
        obs, state, reward, terminated, truncated, info = step(
            jax.random.PRNGKey(t), state, jnp.zeros(1), params
        )
        assert float(reward) == 1.0 and not bool(terminated)
        assert bool(truncated) == (t == 3)
    assert int(state.time) == 0  # Reset after the time limit,
    assert not np.allclose(info["final_observation"], obs)  # to a new episode's observation,
    assert not np.allclose(info["final_observation"], last)  # the ended one's kept.


def test_brax_names_and_the_missing_extra_are_clear_errors(monkeypatch):
    if _has("brax"):
        with pytest.raises(ValueError, match="Unknown Brax environment 'hoper'"):
            envs.make("brax:hoper")
    monkeypatch.setitem(sys.modules, "brax", None)  # As if not installed.
    with pytest.raises(ValueError, match=r'pip install -e "\.\[brax\]"'):
        envs.make("brax:hopper")


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_td3_runs_on_gymnasium_mujoco_on_the_host_loop(tmp_path):
    pytest.importorskip("mujoco")
    from purerl.agents import registry
    from purerl.experiments.engine.trainer import train

    entry = registry.get("td3")
    run = RunConfig(
        env="gymnasium:Hopper-v5",
        total_timesteps=400,
        num_logs=2,
        run_dir=str(tmp_path / "td3"),
        quiet=True,
        num_devices=1,
        plot=False,
    )
    config = entry.config_class()(
        hidden_sizes=(16,), batch_size=32, learning_starts=100, buffer_size=400
    )
    summary = train(entry, run, config)
    assert summary["loop"] == "host" and np.isfinite(summary["final_return"][0])


def test_envpool_batch_resets_on_the_same_step_and_keeps_final_observations():
    pytest.importorskip("envpool")
    vec = envs.make_host("envpool:CartPole-v1", 4)
    assert type(vec).__name__ == "EnvPoolVecEnv" and vec.spec.observation_space.shape == (4,)
    obs = vec.reset(seed=0)
    ends = 0
    for _ in range(40):  # Always left: episodes end within about 10 steps.
        prev = obs
        obs, reward, term, trunc, final, ret, length, done = vec.step(np.zeros(4, np.int64))
        assert reward.shape == (4,) and np.all(reward == 1.0)
        for i in np.flatnonzero(done):
            ends += 1
            assert abs(final[i][2]) > 0.2 or abs(final[i][0]) > 2.4  # The ended state,
            assert np.all(np.abs(obs[i]) < 0.05)  # and a fresh episode's first observation.
            assert length[i] >= 8 and ret[i] == length[i]
        np.testing.assert_array_equal(final[~done], obs[~done])
        assert not np.shares_memory(prev, obs)
    assert ends >= 8


def test_envpool_atari_learns_with_episodic_life_and_logs_whole_games():
    pytest.importorskip("envpool")
    vec = envs.make_host("envpool:Breakout-v5", 2)
    obs = vec.reset(0)
    # Frames channels last, as the CNN torso takes them (EnvPool gives [stack, H, W]).
    assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8
    assert vec.spec.observation_space.shape == (84, 84, 4)
    rng = np.random.default_rng(0)
    lives = games = 0
    for _ in range(3000):
        _, _, terminated, truncated, _, ended_return, ended_length, over = vec.step(
            rng.integers(0, 4, 2)
        )
        lives += int(terminated.sum())
        games += int(over.sum())
        assert np.all(terminated[over] | truncated[over])  # A lost game is a lost life too.
        assert np.all(ended_length[over] > 0) and np.all(ended_return[~over] == 0)
    assert games > 0 and lives >= 4 * games  # Breakout: 5 lives a game, each a terminal.
    vec.close()
    from purerl.envs.atari import is_envpool_atari  # Its rewards are clipped by default.

    assert is_envpool_atari("envpool:Breakout-v5") and not is_envpool_atari("envpool:CartPole-v1")


def test_envpool_names_and_the_missing_extra_are_clear_errors(monkeypatch):
    if _has("envpool"):
        with pytest.raises(ValueError, match="Unknown EnvPool environment 'CartPol-v1'"):
            envs.resolve("envpool:CartPol-v1")
    monkeypatch.setitem(sys.modules, "envpool", None)
    with pytest.raises(ValueError, match=r'pip install -e "\.\[envpool\]"'):
        envs.resolve("envpool:CartPole-v1")


def test_clipped_rewards_reach_the_learner_while_raw_returns_are_logged(tmp_path):
    import threading

    from purerl.agents import registry
    from purerl.experiments.engine.build import build_loop

    entry = registry.get("ppo")
    config = entry.config_class()(num_envs=2, num_steps=200, num_minibatches=2)
    run = RunConfig(env="gymnasium:Pendulum-v1", clip_rewards=True, num_devices=1)
    loop = build_loop(run, lambda c: entry.recipe(config, c)).loop
    runner = loop.init()
    state = loop._to_actor(runner.learner)
    position = (runner.actor_key, runner.actor_carry, runner.actor_done, runner.actor_steps)
    (trajectory, stats), _ = loop._collect(state, position, threading.Event())
    loop.close()
    assert set(np.unique(trajectory.reward)) <= {-1.0, 0.0}  # Pendulum pays -16..0: signs.
    assert stats[2] == 2 and stats[0] / stats[2] < -100  # Two whole episodes, raw returns.


def test_the_atari_preset_stacks_84x84_grey_frames_channels_last():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from purerl.envs.atari import is_atari

    vec = envs.make_host("gymnasium:ALE/Breakout-v5", 2)
    assert is_atari("gymnasium:ALE/Breakout-v5") and not is_atari("gymnasium:CartPole-v1")
    assert vec.spec.observation_space.shape == (84, 84, 4)
    obs = vec.reset(seed=0)
    assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8
    for _ in range(3):
        obs, *_ = vec.step(np.ones(2, np.int64))
    vec.close()
    with pytest.raises(ValueError, match="Unknown Atari environment"):
        envs.resolve("gymnasium:ALE/Breakot-v5")


def test_the_atari_preset_learns_with_episodic_life_and_logs_whole_games():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    vec = envs.make_host("gymnasium:ALE/Breakout-v5", 2)
    obs = vec.reset(0)
    rng = np.random.default_rng(0)
    lives = games = 0
    lengths = []
    for _ in range(1500):
        obs, _, terminated, truncated, final, ended_return, ended_length, over = vec.step(
            rng.integers(0, 4, 2)
        )
        lives += int(terminated.sum())
        games += int(over.sum())
        lengths += list(ended_length[over])
        assert np.all(terminated[over] | truncated[over])  # A lost game is a lost life too.
        assert np.all(ended_return[~over] == 0)
        for i in np.flatnonzero(terminated & ~over):
            # After a lost life the same game goes on: the frame stack carries over.
            np.testing.assert_array_equal(obs[i][..., :3], final[i][..., 1:])
    # Breakout: 5 lives a game, each a terminal for the agent; the logged episodes are games.
    assert games > 0 and lives >= 4 * games
    assert min(lengths) > 60  # Whole games, not single lives.
    vec.close()
