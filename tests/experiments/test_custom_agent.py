"""A researcher's own agent (examples/reinforce.py) trained by `purerl.train` on both loops."""

import dataclasses
import json
import shutil
import sys

import chex
import jax
import numpy as np
import purerl
import pytest
from purerl import Recipe, RunConfig
from purerl.experiments.command import purerl_main
from purerl.experiments.engine import trainee
from purerl.experiments.engine.build import build_loop
from purerl.experiments.engine.policy import load_agent
from purerl.experiments.engine.restore import init_from
from purerl.experiments.engine.trainer import TrainResult
from purerl.replay import Schedule, on_policy, uniform_replay

from examples.reinforce import main, make_recipe, make_reinforce
from tests.helpers import assert_k_of_n


@pytest.mark.slow
def test_reinforce_learns_cartpole_on_the_device_loop(tmp_path):
    summary = main(
        run_dir=str(tmp_path / "dev"), quiet=True, num_devices=1, num_seeds=8, eval_episodes=2
    )
    assert summary["agent"] == "reinforce" and summary["loop"] == "device"
    # A random policy scores about 22; of 24 seeds after 3e5 steps one ended below 300 (168).
    assert_k_of_n(summary["final_return"], 6, 300, "REINFORCE, CartPole-v1, 3e5 steps")
    assert json.loads((tmp_path / "dev" / "config.json").read_text())["agent"] == "reinforce"
    assert (tmp_path / "dev" / "metrics.csv").exists()


def test_reinforce_runs_on_the_host_loop_with_checkpoints(tmp_path):
    summary = main(
        "gymnasium:CartPole-v1",
        total_timesteps=8192,
        run_dir=str(tmp_path / "host"),
        quiet=True,
        num_devices=1,
        checkpoint_every=4096,
        plot=False,
    )
    assert summary["loop"] == "host" and summary["total_timesteps"] == 8192
    assert list((tmp_path / "host" / "checkpoints").iterdir())


# Every run feature on an agent of your own (examples/reinforce.py's factory, or a plain
# Agent), not only on the built-in ones. 8 envs x 256 steps: 2,048 env steps an update.
SHORT = dict(env="CartPole-v1", num_devices=1, plot=False, quiet=True, tensorboard=False)


@pytest.fixture(scope="module")
def reinforce_run(tmp_path_factory):
    """Two seeds of REINFORCE from its factory, trained by `purerl.train`, and its result."""
    run_dir = tmp_path_factory.mktemp("runs") / "reinforce"
    run = RunConfig(total_timesteps=4096, num_logs=2, num_seeds=2, run_dir=str(run_dir), **SHORT)
    return run_dir, purerl.train(make_recipe, run=run, name="reinforce")


def test_train_returns_the_trained_states_policy_msgpack_holds(reinforce_run):
    run_dir, result = reinforce_run
    assert isinstance(result, TrainResult) and result.run_dir == run_dir
    leaves = jax.tree.leaves(result.agent_states)
    assert leaves and all(np.shape(x)[0] == 2 for x in leaves)  # [seeds, ...]
    _, saved, _ = load_agent(run_dir)  # policy.msgpack, into the agent rebuilt from its factory
    chex.assert_trees_all_equal(result.agent_states, saved)
    chex.assert_trees_all_equal(result.state(1), jax.tree.map(lambda x: x[1], saved))
    # It reads as the summary too, as `purerl.train` returned before.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["final_return"] == summary["final_return"] and result["agent"] == "reinforce"
    assert len(result["final_return"]) == 2


def test_a_factory_is_recorded_and_load_policy_rebuilds_the_agent_from_it(
    reinforce_run, capsys, monkeypatch
):
    run_dir, result = reinforce_run
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["factory"] == "examples.reinforce:make_recipe" and saved["agent"] == "reinforce"
    obs = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
    policy = purerl.load_policy(run_dir, seed_index=1)
    expected, _, _ = make_reinforce().act(result.state(1), (), obs, jax.random.PRNGKey(1), True)
    np.testing.assert_array_equal(policy(obs, jax.random.PRNGKey(1)), expected)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # The command sets its own.
    purerl_main(["enjoy", str(run_dir), "--episodes", "2"])  # Evaluated without this code.
    assert "reinforce on CartPole-v1 (seed index 0): return" in capsys.readouterr().out


def test_train_with_resume_extends_a_finished_run_of_a_factory(reinforce_run, tmp_path):
    run_dir = tmp_path / "extended"
    shutil.copytree(reinforce_run[0], run_dir)  # The fixture's run stays as it is.
    longer = RunConfig(total_timesteps=8192, quiet=True)
    result = purerl.train(make_recipe, run=longer, resume=run_dir)
    assert result["total_timesteps"] == 8192 and result.run_dir == run_dir
    assert json.loads((run_dir / "config.json").read_text())["run"]["total_timesteps"] == 8192
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 4  # The whole run.
    assert all(np.shape(x)[0] == 2 for x in jax.tree.leaves(result.agent_states))
    with pytest.raises(ValueError, match="is complete"):  # Without a longer total: done.
        purerl.train(make_recipe, run=RunConfig(total_timesteps=8192), resume=run_dir)
    # The command line extends it too, rebuilding the agent from the recorded factory.
    purerl_main(["resume", str(run_dir), "--total-timesteps", "12288", "--quiet"])
    assert json.loads((run_dir / "summary.json").read_text())["total_timesteps"] == 12288
    assert result["agent"] == "reinforce"  # The run's own name, as config.json records it.


def test_a_plain_agent_records_no_factory_and_loads_when_given_again(tmp_path):
    # The fixture's agent and sizes (one compiled program for both), given as a value: an
    # Agent with its data path and schedule, nothing importable to record.
    agent, data, schedule = make_reinforce(), on_policy(), Schedule(rollout_length=256)
    run_dir = tmp_path / "plain"
    run = RunConfig(total_timesteps=4096, num_logs=2, num_seeds=2, run_dir=str(run_dir), **SHORT)
    result = purerl.train(agent, data, schedule, run, num_envs=8, name="mine")
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["agent"] == "mine" and "factory" not in saved
    with pytest.raises(ValueError) as e:
        purerl.load_policy(run_dir)
    assert "records no factory" in str(e.value)
    assert "load_policy(run_dir, agent=AGENT)" in str(e.value)
    policy = purerl.load_policy(run_dir, seed_index=1, agent=agent)
    obs = jax.random.normal(jax.random.PRNGKey(2), (6, 4))
    expected, _, _ = agent.act(result.state(1), (), obs, jax.random.PRNGKey(0), True)
    np.testing.assert_array_equal(policy(obs, jax.random.PRNGKey(0)), expected)
    # It resumes (here: extends) with the agent given again.
    longer = dataclasses.replace(run, total_timesteps=8192)
    result = purerl.train(agent, data, schedule, longer, num_envs=8, resume=run_dir)
    assert result["total_timesteps"] == 8192
    assert result["agent"] == "mine"  # The run's own name, as config.json records it.


def test_init_from_a_run_of_a_factory_copies_its_agent(reinforce_run, tmp_path, capsys):
    run_dir, result = reinforce_run
    who = trainee.user(make_recipe, name="reinforce")
    run = RunConfig(total_timesteps=2048, num_logs=1, num_seeds=2, init_from=str(run_dir), **SHORT)
    loop = build_loop(run, who.build).loop
    try:
        states = jax.device_get(loop.agent_states(init_from(loop, loop.init(), run.init_from)))
    finally:
        loop.close()
    assert f"starting from {run_dir}'s reinforce agent: copied agent state" in (
        capsys.readouterr().err
    )
    params, opt_state = states
    chex.assert_trees_all_equal(params, result.agent_states[0])  # Seed to seed.
    # Adam's moments are copied; its step count restarts (a schedule would run afresh).
    trained_adam, adam = result.agent_states[1][0], opt_state[0]
    chex.assert_trees_all_equal(adam.mu, trained_adam.mu)
    assert np.all(adam.count == 0) and np.all(trained_adam.count > 0)


@pytest.mark.parametrize("data, staleness", [(uniform_replay(1000, 32), 1), (on_policy(), 0)])
def test_the_host_loop_staleness_default_comes_from_the_data_path(data, staleness):
    # A user agent with a replay path may act ahead of learning, an on-policy one may not;
    # --max-staleness overrides either.
    recipe = Recipe(make_reinforce(), data, Schedule(rollout_length=16), num_envs=4)
    host = dict(env="gymnasium:CartPole-v1", total_timesteps=4096, num_devices=1, quiet=True)
    for run, expected in ((RunConfig(**host), staleness), (RunConfig(**host, max_staleness=2), 2)):
        built = build_loop(run, lambda context: recipe)
        try:
            assert built.loop.kind == "host" and built.loop.staleness == expected
        finally:
            built.loop.close()
