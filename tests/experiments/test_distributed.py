"""Multi-host training (`jax.distributed`), run as processes on localhost (gloo), and the
command line's one-device-per-core default on a CPU."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import serialization
from purerl.agents.dqn import DQNConfig
from purerl.agents.ppo import PPOConfig
from purerl.experiments import dqn, ppo
from purerl.experiments.engine import distributed
from purerl.experiments.engine.config import RunConfig, layout


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start(agent, args, port, index, count=2):
    """Process `index` of a multi-host run on localhost, with one CPU device of its own."""
    argv = [sys.executable, "-m", f"purerl.experiments.{agent}", *args]
    argv += ["--coordinator", f"localhost:{port}", "--num-processes", str(count)]
    argv += ["--process-id", str(index), "--num-devices", str(count), "--no-compile-cache"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def run_processes(agent, args, count=2):
    port = free_port()
    procs = [start(agent, args, port, i, count) for i in range(count)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, f"{out}\n{err[-3000:]}"
    return [out for out, _ in outs]


def policy(run_dir):
    return serialization.msgpack_restore((Path(run_dir) / "policy.msgpack").read_bytes())


def assert_same_params(a, b):
    leaves_a, leaves_b = jax.tree.leaves(policy(a)), jax.tree.leaves(policy(b))
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


@pytest.mark.parametrize(
    "agent, module, config, steps",
    [
        ("ppo", ppo, PPOConfig(num_envs=4, num_steps=64), 4096),
        ("dqn", dqn, DQNConfig(num_envs=4, learning_starts=256, buffer_size=2048), 3072),
    ],
)
def test_two_processes_train_as_one_process_on_two_devices(tmp_path, agent, module, config, steps):
    common = dict(env="CartPole-v1", total_timesteps=steps, num_logs=2, plot=False)
    common.update(checkpoint_every=steps)
    args = ["--env", "CartPole-v1", "--total-timesteps", str(steps), "--num-logs", "2"]
    args += ["--no-plot", "--num-envs", str(config.num_envs), "--checkpoint-every", str(steps)]
    if agent == "ppo":
        args += ["--num-steps", str(config.num_steps)]
    else:
        args += ["--learning-starts", "256", "--buffer-size", "2048"]
    two = tmp_path / "two"
    outs = run_processes(agent, [*args, "--run-dir", str(two)])
    assert "written by process 0" in outs[1] and "steps/s" not in outs[1]  # No logs of its own.
    assert "done: final return" in outs[0]
    one = tmp_path / "one"
    module.run(RunConfig(**common, num_devices=2, run_dir=str(one), quiet=True), config)
    assert_same_params(one, two)
    saved = json.loads((two / "config.json").read_text())["run"]
    assert saved["num_devices"] == 2 and saved["coordinator"] is None  # Loads anywhere.
    assert len(list((two / "tensorboard").iterdir())) == 1  # One writer: process 0.
    summary = json.loads((two / "summary.json").read_text())
    assert summary["devices"]["processes"] == 2
    if agent == "ppo":  # Both processes restore their shards of the checkpoint and go on.
        more = ["--resume", str(two), "--total-timesteps", str(2 * steps), "--quiet"]
        run_processes(agent, more)
        ppo.main(["--resume", str(one), "--total-timesteps", str(2 * steps), "--quiet"])
        assert_same_params(one, two)


def test_a_process_that_cannot_reach_the_coordinator_stops_with_a_clear_error(tmp_path):
    port = free_port()  # Nobody listens there.
    argv = [sys.executable, "-m", "purerl.experiments.ppo", "--run-dir", str(tmp_path / "r")]
    argv += ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", "1"]
    argv += ["--coordinator-timeout", "1"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert f"could not reach the coordinator at localhost:{port} within 1 s" in out.stderr
    assert not (tmp_path / "r").exists()


def test_settings_come_from_flags_or_the_environment(monkeypatch):
    for var in (distributed.ADDRESS_VAR, distributed.PROCESSES_VAR, distributed.PROCESS_ID_VAR):
        monkeypatch.delenv(var, raising=False)
    assert distributed.settings(RunConfig()) is None
    run = RunConfig(coordinator="10.0.0.1:1234", num_processes=4, process_id=3)
    assert distributed.settings(run) == ("10.0.0.1:1234", 4, 3)
    monkeypatch.setenv(distributed.ADDRESS_VAR, "h:99")
    monkeypatch.setenv(distributed.PROCESSES_VAR, "2")
    monkeypatch.setenv(distributed.PROCESS_ID_VAR, "1")
    assert distributed.settings(RunConfig()) == ("h:99", 2, 1)
    assert distributed.settings(RunConfig(process_id=0)) == ("h:99", 2, 0)  # Flags win.


@pytest.mark.parametrize(
    "run, message",
    [
        (RunConfig(coordinator="h:1"), "missing: --num-processes N"),
        (RunConfig(coordinator="h", num_processes=2, process_id=0), "must be HOST:PORT"),
        (RunConfig(coordinator="h:1", num_processes=2, process_id=2), "must be in [0, --num-"),
        (RunConfig(num_processes=2, process_id=0), "missing: --coordinator HOST:PORT"),
    ],
)
def test_incomplete_or_bad_settings_get_clear_errors(monkeypatch, run, message):
    for var in (distributed.ADDRESS_VAR, distributed.PROCESSES_VAR, distributed.PROCESS_ID_VAR):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("+", r"\+")):
        distributed.settings(run)


def test_joining_after_jax_started_its_devices_is_refused():
    jax.devices()
    run = RunConfig(coordinator="localhost:1", num_processes=2, process_id=0)
    with pytest.raises(ValueError, match="has started them already"):
        distributed.initialize(run)


def test_the_cli_spreads_several_runs_over_one_cpu_device_per_core(tmp_path):
    cores = len(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    common = ["--total-timesteps", "2048", "--num-logs", "1", "--no-plot", "--quiet"]
    for seeds in (1, 2):
        run_dir = tmp_path / f"seeds{seeds}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "purerl.experiments.ppo",
                *common,
                "--num-seeds",
                str(seeds),
                "--run-dir",
                str(run_dir),
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        saved = json.loads((run_dir / "config.json").read_text())["run"]
        expected = 2 if seeds == 2 and cores >= 2 else 1  # A single run stays on one.
        assert saved["num_devices"] == expected
        assert saved["spread_runs"] == (expected > 1)


def test_layout_keeps_what_the_user_chose(monkeypatch):
    from purerl.experiments.engine import config

    monkeypatch.setattr(config, "_CORE_DEVICES", [4])  # As if the CLI made 4 (conftest did).
    assert layout(RunConfig(num_seeds=6), host=False).num_devices == 3
    assert layout(RunConfig(num_seeds=6), host=False).spread_runs
    assert layout(RunConfig(num_seeds=5), host=False).num_devices == 1
    assert layout(RunConfig(num_seeds=8), host=True).num_devices == 1  # The host loop.
    assert layout(RunConfig(num_seeds=8, num_devices=1), host=False).num_devices == 1
    monkeypatch.setattr(config, "_CORE_DEVICES", [])  # The user set a device count.
    assert layout(RunConfig(num_seeds=8), host=False) == RunConfig(num_seeds=8)
