"""The optional environment extras: Brax on the device loop, MuJoCo through Gymnasium on the
host loop. Each test skips only when its extra is not installed."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from purerl import envs
from purerl.experiments.config import RunConfig


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
    from purerl.experiments.trainer import train

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
