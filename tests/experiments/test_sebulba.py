"""The host loop (Sebulba): Python environments train with the same agents, runs are
deterministic whatever the threads' timing, and a failing environment stops the run with a
clear error and an intact checkpoint."""

import json
import os
import sys

import jax
import numpy as np
import purerl
import pytest
from purerl.experiments import dqn, enjoy, ppo
from purerl.experiments.cli import cli_main
from purerl.experiments.engine.checkpoint import Checkpoints

from tests.envs import my_host_envs

CORRIDOR = "examples.custom_gymnasium_env:Corridor"


def test_ppo_learns_a_users_gymnasium_env_from_module_class(tmp_path, capsys):
    summary = ppo.main(
        ["--env", CORRIDOR, "--total-timesteps", "20000", "--run-dir", str(tmp_path), "--quiet"]
    )
    assert summary["loop"] == "host"
    assert summary["final_return_mean"] > 0.85  # Random play: about -0.2.
    # The saved policy loads back for research code, and replays with a video.
    policy = purerl.load_policy(tmp_path)
    assert policy(np.zeros((3, 9), np.float32), jax.random.PRNGKey(0)).shape == (3,)
    # It also takes the Dict observations the env returns: one, or a vector env's batch.
    from examples.custom_gymnasium_env import Corridor

    one, _ = Corridor().reset(seed=0)
    assert policy(one, None).shape == (1,)
    batch = {"position": np.array([6, 0]), "time_left": np.array([[0.5], [0.5]], np.float32)}
    flat = np.zeros((2, 9), np.float32)
    flat[0, 6], flat[1, 0], flat[:, 8] = 1.0, 1.0, 0.5
    np.testing.assert_array_equal(policy(batch, None), policy(flat, None))
    assert int(policy(batch, None)[0]) == 1  # Next to the exit: go right.
    with pytest.raises(ValueError, match="expects observations from Dict"):
        policy({"position": np.array([99])}, None)
    enjoy.main([str(tmp_path), "--episodes", "3", "--render", str(tmp_path / "run.gif")])
    out = capsys.readouterr().out
    assert "return 0.9" in out and "0 of 3 cut off by a time limit" in out
    assert 4 <= float(out.split("length ")[1].split()[0]) <= 7  # It starts 4 to 7 steps away.
    assert (tmp_path / "run.gif").read_bytes().startswith(b"GIF8")


def test_dqn_learns_a_users_gymnasium_env_by_registered_id(tmp_path):
    summary = dqn.main(
        [
            "--env",
            "gymnasium:examples.custom_gymnasium_env:Corridor-v0",
            "--total-timesteps",
            "20000",
            "--learning-starts",
            "1000",
            "--epsilon-decay-steps",
            "8000",
            "--epsilon-end",
            "0.01",
            "--run-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert summary["final_return_mean"] > 0.85


def short_run(run_dir, *extra):
    return ppo.main(
        [
            "--env",
            "gymnasium:CartPole-v1",
            "--total-timesteps",
            "8192",
            "--num-logs",
            "4",
            "--num-envs",
            "4",
            "--num-steps",
            "32",
            "--run-dir",
            str(run_dir),
            "--quiet",
            *(extra or ("--num-devices", "1")),
        ]
    )


def test_runs_are_deterministic_whatever_the_thread_timing(tmp_path):
    a = short_run(tmp_path / "a")
    b = short_run(tmp_path / "b")
    policy = {run: (tmp_path / run / "policy.msgpack").read_bytes() for run in "abc" if run != "c"}
    assert policy["a"] == policy["b"]
    assert a["final_return"] == b["final_return"]
    # Staleness 1 acts with older parameters, so it is a different (equally fixed) run.
    short_run(tmp_path / "c", "--max-staleness", "1", "--num-devices", "1")
    assert policy["a"] != (tmp_path / "c" / "policy.msgpack").read_bytes()


def test_wait_fractions_are_logged(tmp_path):
    short_run(tmp_path)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "actor_wait_fraction" in header and "learner_wait_fraction" in header
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["run"]["max_staleness"] is None  # PPO's default: 0.


def test_the_learner_runs_data_parallel_on_the_host_loop(tmp_path):
    summary = short_run(tmp_path, "--num-devices", "2")
    assert summary["devices"]["count"] == 2


def test_host_envs_train_one_seed_per_process(tmp_path):
    with pytest.raises(ValueError, match="one seed per"):
        short_run(tmp_path, "--num-seeds", "2")


def test_an_env_that_raises_stops_the_run_naming_it_and_keeps_the_checkpoint(
    tmp_path, monkeypatch, capsys
):
    argv = [
        "--env",
        "tests.envs.my_host_envs:Exploding",
        "--num-devices",
        "1",
        "--num-envs",
        "2",
        "--num-steps",
        "16",
        "--num-minibatches",
        "2",
        "--total-timesteps",
        "3200",
        "--num-logs",
        "10",
        "--checkpoint-every",
        "320",
        "--run-dir",
        str(tmp_path),
        "--quiet",
    ]
    my_host_envs.Exploding.steps = 0
    monkeypatch.setenv("PURERL_TEST_EXPLODE_AT", "1000")  # In the 4th logging interval.
    with pytest.raises(SystemExit) as exit_info:
        cli_main(lambda: ppo.main(argv))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "the simulator crashed" in err
    assert "tests.envs.my_host_envs:Exploding raised in step" in err
    assert f"--resume {tmp_path}" in err
    assert not (tmp_path / "summary.json").exists()
    checkpoints = Checkpoints(tmp_path, 3)
    assert checkpoints.manager.latest_step() == 2  # Intervals 0, 1 and 2 were saved.
    checkpoints.close()
    monkeypatch.delenv("PURERL_TEST_EXPLODE_AT")
    summary = ppo.main(["--resume", str(tmp_path), "--quiet"])
    assert summary["total_timesteps"] == 3200
    assert os.path.exists(tmp_path / "policy.msgpack")


def test_asking_for_wandb_without_it_installed_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # As if not installed: import fails.
    with pytest.raises(ValueError, match="pip install wandb"):
        short_run(tmp_path, "--wandb-project", "purerl-test", "--num-devices", "1")


def test_resuming_async_envs_says_it_cannot_be_exact(tmp_path, capsys):
    # Subprocess envs' state cannot be saved: the resumed run says so instead of pretending.
    short_run(tmp_path, "--host-envs", "async", "--checkpoint-every", "4096", "--num-devices", "1")
    (tmp_path / "summary.json").unlink()
    capsys.readouterr()
    ppo.main(["--resume", str(tmp_path), "--quiet"])
    assert "will not be bit-identical" in capsys.readouterr().err
    assert (tmp_path / "summary.json").exists()


def test_host_loop_options_on_a_jax_env_are_named_as_unused(tmp_path, capsys):
    ppo.main(
        ["--env", "CartPole-v1", "--total-timesteps", "4096", "--max-staleness", "1"]
        + ["--num-devices", "1", "--run-dir", str(tmp_path), "--quiet", "--no-plot"]
    )
    assert "not using the host-loop option(s) --max-staleness" in capsys.readouterr().err


def test_a_recurrent_agent_runs_on_the_host_loop_and_its_policy_carries_state(tmp_path):
    summary = ppo.main(
        [
            "--env",
            "gymnasium:CartPole-v1",
            "--torso",
            "gru",
            "--hidden-sizes",
            "16",
            "16",
            "--total-timesteps",
            "4096",
            "--num-logs",
            "2",
            "--run-dir",
            str(tmp_path),
            "--quiet",
            "--no-plot",
            "--eval-episodes",
            "2",
            "--num-devices",
            "1",
        ]
    )
    assert summary["loop"] == "host" and len(summary["eval_return"]) == 1
    policy = purerl.load_policy(tmp_path)
    carry = policy.initial_carry(3)
    assert carry.shape == (3, 16)
    action, new_carry = policy.step(carry, np.zeros((3, 4), np.float32), jax.random.PRNGKey(0))
    assert action.shape == (3,) and not np.allclose(new_carry, carry)
    with pytest.raises(ValueError, match="recurrent: call policy.step"):
        policy(np.zeros((3, 4), np.float32), jax.random.PRNGKey(0))


def test_rendering_without_pygame_names_the_extra():
    from gymnasium.error import DependencyNotInstalled
    from purerl.experiments.engine.evaluate import _frame

    class NoPygame:
        def render(self):
            raise DependencyNotInstalled('pygame is not installed, run `pip install "gymnasium"`')

    with pytest.raises(ValueError, match=r'needs pygame.*pip install -e "\.\[render\]"'):
        _frame(NoPygame(), "gymnasium:CartPole-v1")


def test_resume_says_how_host_envs_come_back_and_can_rebuild_them():
    from purerl.agents.registry import get
    from purerl.experiments.engine.build import build_loop
    from purerl.experiments.engine.config import RunConfig

    entry = get("ppo")
    config = entry.config_class()(num_envs=2, num_steps=8, num_minibatches=1)
    run = RunConfig(env="gymnasium:CartPole-v1", num_devices=1, total_timesteps=64)
    loop = build_loop(run, lambda c: entry.recipe(config, c)).loop
    try:
        loop.init()
        saved = loop.host_state()
        assert "restored as pickled" in loop.load_host_state(saved)
        message = loop.load_host_state(saved, rebuild=True)
        assert "--rebuild-envs" in message and "not be bit-identical" in message
    finally:
        loop.close()


@pytest.mark.parametrize(
    "agent, args, inline",
    [
        ("ppo", ["--num-steps", "32"], True),  # Actor and learner take turns.
        ("dqn", ["--learning-starts", "128", "--batch-size", "32"], False),  # They overlap.
    ],
)
def test_the_host_loop_sets_its_xla_cpu_flag_before_jax_starts_its_backend(
    tmp_path, agent, args, inline
):
    # XLA reads its flags once, when JAX starts its backend: the command line must ask for
    # sequential CPU ops (a 1.2x faster host loop on 2 cores), and for on-policy agents
    # inline execution (1.1x more; it made SAC's overlapping learner 1.35x slower), before
    # anything starts it.
    import subprocess

    script = f"""
import sys
from jax._src import xla_bridge
from purerl.experiments import cli, {agent} as agent
from purerl.experiments.engine import sebulba
seen = []
real = sebulba.prefer_sequential_cpu_ops
def spy(inline=False):
    seen.append(xla_bridge.backends_are_initialized())
    real(inline)
sebulba.prefer_sequential_cpu_ops = spy
sys.argv = ["{agent}", "--env", "gymnasium:CartPole-v1", "--total-timesteps", "256",
    *{args!r}, "--num-logs", "1", "--run-dir", {str(tmp_path / "run")!r}, "--quiet",
    "--no-plot", "--no-tensorboard", "--no-compile-cache"]
cli.cli_main(agent.main)
import jax
print("started before the flag:", seen, "async:", jax.config.read("jax_cpu_enable_async_dispatch"))
"""
    drop = ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "JAX_CPU_ENABLE_ASYNC_DISPATCH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    expected = f"started before the flag: [False] async: {not inline}"
    assert expected in out.stdout, out.stdout + out.stderr
