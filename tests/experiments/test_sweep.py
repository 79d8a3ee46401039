import jax
import numpy as np
import pytest
from purerl.agents import registry
from purerl.agents.ppo import PPOConfig
from purerl.experiments import ppo
from purerl.experiments.cli import parse
from purerl.experiments.engine.config import RunConfig
from purerl.experiments.engine.policy import load_agent
from purerl.experiments.engine.sweep import parse_sweep

SMALL = PPOConfig(num_envs=4, num_steps=16, num_minibatches=2, update_epochs=2)


def test_a_swept_configuration_trains_like_its_separate_run(tmp_path):
    common = dict(total_timesteps=10 * 64, num_logs=1, quiet=True, plot=False, num_devices=1)
    run = RunConfig(run_dir=str(tmp_path / "sweep"), num_seeds=2, **common)
    run = RunConfig(**{**run.__dict__, "sweep": ("learning_rate=1e-4,3e-3",)})
    summary = ppo.run(run, SMALL)
    assert summary["seeds"] == [0, 1, 0, 1] and len(summary["sweep"]) == 2
    separate = RunConfig(run_dir=str(tmp_path / "one"), num_seeds=2, **common)
    ppo.run(separate, PPOConfig(**{**SMALL.__dict__, "learning_rate": 3e-3}))
    _, swept, _ = load_agent(tmp_path / "sweep")
    _, alone, _ = load_agent(tmp_path / "one")
    # After 10 updates, runs 2-3 (lr 3e-3, seeds 0-1) equal the separate run's seeds 0-1.
    for a, b in zip(jax.tree.leaves(swept.params), jax.tree.leaves(alone.params), strict=True):
        np.testing.assert_allclose(np.asarray(a)[2:], np.asarray(b), atol=1e-5)
    # and the other learning rate trained something else.
    first = jax.tree.leaves(swept.params)[0]
    assert not np.allclose(np.asarray(first)[:2], np.asarray(jax.tree.leaves(alone.params)[0]))
    rows = (tmp_path / "sweep" / "sweep.csv").read_text().splitlines()
    assert rows[0] == "learning_rate,seed,final_return,eval_return" and len(rows) == 5


def test_structural_and_unknown_options_are_refused_with_what_can_be_swept():
    with pytest.raises(ValueError, match="structural option of PPOConfig.*learning_rate"):
        parse_sweep(("num_envs=4,8",), PPOConfig())
    with pytest.raises(ValueError, match="not an option of PPOConfig"):
        parse_sweep(("learnin_rate=1e-3",), PPOConfig())
    with pytest.raises(ValueError, match="must be a positive number"):
        parse_sweep(("learning_rate=1e-3,-1",), PPOConfig())
    sweep = parse_sweep(("learning_rate=1e-4,3e-4", "gamma=0.9,0.99,0.999"), PPOConfig())
    assert len(sweep.grid) == 6 and sweep.values(2).shape == (12, 2)


def test_a_sweep_on_a_host_env_trains_each_run_as_a_process(tmp_path):
    run_dir = tmp_path / "h"
    run = RunConfig(
        env="gymnasium:CartPole-v1",
        run_dir=str(run_dir),
        sweep=("learning_rate=1e-4,3e-3",),
        total_timesteps=4 * 64,
        num_logs=1,
        num_devices=1,
        quiet=True,
    )
    summary = ppo.run(run, SMALL)
    assert summary["loop"] == "host" and len(summary["runs"]) == 2
    rows = (run_dir / "sweep.csv").read_text().splitlines()
    assert rows[0] == "learning_rate,seed,final_return,eval_return" and len(rows) == 3
    assert (run_dir / "learning_curve.png").exists()
    params = []
    for g, lr in enumerate((1e-4, 3e-3)):  # Each process trained with its own value.
        _, state, config = load_agent(run_dir / f"config{g}_seed0")
        assert config["agent_config"].learning_rate == lr
        params.append(np.asarray(jax.tree.leaves(state.params)[0]))
    assert not np.allclose(params[0], params[1])
    # Continuing the finished sweep keeps its runs and writes the same table.
    again = ppo.run(RunConfig(**{**run.__dict__, "resume": str(run_dir)}), SMALL)
    assert again["final_return"] == summary["final_return"]
    with pytest.raises(ValueError, match="already holds a sweep"):
        ppo.run(run, SMALL)


def test_the_sweep_from_a_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sweep: {learning_rate: [1e-4, 3e-4], gamma: 0.9}\n")
    cls = __import__("purerl.experiments.cli", fromlist=["experiment_class"]).experiment_class(
        "ppo"
    )
    args = parse(cls, ["--config", str(path)])
    sweep = parse_sweep(args.run.sweep, registry.get("ppo").config_class()())
    assert sweep.names == ("learning_rate", "gamma")
    assert sweep.grid == ((1e-4, 0.9), (3e-4, 0.9))


def test_an_option_that_steers_control_flow_is_a_clear_error(tmp_path):
    from purerl.agents.td3 import TD3Config
    from purerl.experiments import td3

    run = RunConfig(
        env="Pendulum-v1",
        total_timesteps=64,
        run_dir=str(tmp_path / "t"),
        quiet=True,
        num_devices=1,
        sweep=("exploration_noise=0.1,0.2",),
    )
    config = TD3Config(hidden_sizes=(8,), batch_size=8, learning_starts=8, buffer_size=64)
    with pytest.raises(ValueError, match="cannot be swept in one program"):
        td3.run(run, config)


def test_runs_spread_over_devices_train_as_on_one_device(tmp_path):
    # 2 learning rates x 2 seeds = 4 runs, 2 per device on 2 devices, against one device.
    common = dict(
        total_timesteps=6 * 64, num_logs=1, quiet=True, plot=False, num_seeds=2, eval_episodes=2
    )
    sweep = ("learning_rate=1e-4,3e-3",)
    spread = RunConfig(
        run_dir=str(tmp_path / "spread"), num_devices=2, spread_runs=True, sweep=sweep, **common
    )
    one = RunConfig(run_dir=str(tmp_path / "one"), num_devices=1, sweep=sweep, **common)
    a, b = ppo.run(spread, SMALL), ppo.run(one, SMALL)
    assert a["devices"]["count"] == 2 and a["seeds"] == b["seeds"] == [0, 1, 0, 1]
    np.testing.assert_allclose(a["final_return"], b["final_return"], rtol=1e-5)
    np.testing.assert_allclose(a["eval_return"], b["eval_return"], rtol=1e-5)
    _, spread_states, _ = load_agent(tmp_path / "spread")
    _, one_states, _ = load_agent(tmp_path / "one")
    for x, y in zip(
        jax.tree.leaves(spread_states.params), jax.tree.leaves(one_states.params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)
    with pytest.raises(ValueError, match="evenly on the 4 devices"):
        ppo.run(RunConfig(run_dir=str(tmp_path / "odd"), num_seeds=3, spread_runs=True), SMALL)
