"""Kill a run (SIGKILL or Ctrl-C) after its first checkpoint, resume it, and compare it with
a run that was never interrupted: parameters and metrics must be bit-identical."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import purerl
import pytest
from purerl.experiments.engine.checkpoint import Checkpoints

ARGS = {
    "ppo": ["--total-timesteps", "300000", "--num-logs", "30", "--checkpoint-every", "20000"],
    "dqn": [
        "--total-timesteps",
        "90000",
        "--num-logs",
        "30",
        "--checkpoint-every",
        "6000",
        "--learning-starts",
        "1000",
        "--buffer-size",
        "5000",
    ],
}
ENV = {**os.environ, "XLA_FLAGS": ""}


def command(agent, run_dir, *extra):
    return [
        sys.executable,
        "-m",
        f"purerl.experiments.{agent}",
        "--run-dir",
        str(run_dir),
        "--quiet",
        *ARGS[agent],
        *extra,
    ]


def interrupt_after_first_checkpoint(cmd, run_dir, sig):
    proc = subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE, text=True)
    checkpoints = run_dir / "checkpoints"
    deadline = time.time() + 180
    while time.time() < deadline:
        if checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()):
            break
        assert proc.poll() is None, f"ended before its first checkpoint: {proc.stderr.read()}"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=180)
    return proc.returncode, err


def metrics_without_timing(run_dir):
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # Timings, not results.
        for name in ("steps_per_second", "actor_wait_fraction", "learner_wait_fraction"):
            row.pop(name, None)
    return rows


def resume(agent, run_dir, *extra):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            f"purerl.experiments.{agent}",
            "--resume",
            str(run_dir),
            "--quiet",
            *extra,
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stderr


def assert_same_run(a, b):
    assert (a / "policy.msgpack").read_bytes() == (b / "policy.msgpack").read_bytes()
    assert metrics_without_timing(a) == metrics_without_timing(b)
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    assert sa["final_return"] == sb["final_return"]
    assert sa["total_timesteps"] == sb["total_timesteps"]


HOST_ARGS = [
    "--env",
    "gymnasium:CartPole-v1",
    "--total-timesteps",
    "80000",
    "--num-logs",
    "20",
    "--checkpoint-every",
    "8000",
    "--num-devices",
    "1",
]


# 2 learning rates x 2 seeds, on a CPU spread over one device per core (the CLI's default).
SWEEP_ARGS = ["--sweep", "learning_rate=1e-3,3e-3", "--num-seeds", "2"]


@pytest.mark.parametrize(
    "agent, extra",
    [("ppo", ()), ("dqn", ()), ("ppo", HOST_ARGS), ("ppo", SWEEP_ARGS)],
    ids=["ppo", "dqn", "ppo-host", "ppo-sweep"],
)
def test_sigkill_then_resume_is_bit_identical(tmp_path, agent, extra, capsys):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(command(agent, whole, *extra), env=ENV, check=True, timeout=300)
    code, _ = interrupt_after_first_checkpoint(
        command(agent, killed, *extra), killed, signal.SIGKILL
    )
    assert code == -signal.SIGKILL
    assert not (killed / "summary.json").exists()  # It really stopped mid-run.
    # Killed before its end, it has no policy.msgpack: load_policy uses the newest checkpoint.
    policy = purerl.load_policy(killed)
    assert policy(np.zeros((2, 4), np.float32), jax.random.PRNGKey(0)).shape == (2,)
    assert "using its newest checkpoint, after" in capsys.readouterr().err
    err = resume(agent, killed)
    assert "not be bit-identical" not in err  # The host loop's sync envs were restored too.
    assert_same_run(whole, killed)
    if extra is SWEEP_ARGS:
        assert (whole / "sweep.csv").read_text() == (killed / "sweep.csv").read_text()


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_same_run(tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    subprocess.run(command("ppo", whole), env=ENV, check=True, timeout=300)
    code, err = interrupt_after_first_checkpoint(command("ppo", stopped), stopped, signal.SIGINT)
    assert code == 130, err
    assert f"--resume {stopped}" in err
    assert not (stopped / "summary.json").exists()
    err = resume("ppo", stopped, "--seed", "5")  # Not used, and said so.
    assert "ignoring --seed" in err
    assert_same_run(whole, stopped)


def test_a_corrupt_checkpoint_is_refused_naming_it(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "purerl.experiments.ppo",
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--total-timesteps",
        "20000",
        "--num-logs",
        "2",
        "--checkpoint-every",
        "10000",
    ]
    subprocess.run(cmd, env=ENV, check=True, timeout=300)
    latest = max(
        (p for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    for f in latest.rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    out = subprocess.run(
        [sys.executable, "-m", "purerl.experiments.ppo", "--resume", str(run_dir)]
        + ["--quiet", "--total-timesteps", "40000"],  # Extends the finished run.
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert f"checkpoint {latest}" in out.stderr and "corrupt" in out.stderr
    assert "move that directory out of checkpoints/" in out.stderr
    assert "Nothing has been changed" in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 4, out.stderr  # No page of TensorStore spec.


def test_resume_needs_a_run_with_checkpoints(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "purerl.experiments.dqn", "--resume", str(tmp_path), "--quiet"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "has no config.json" in out.stderr


def test_checkpoints_can_be_turned_off(tmp_path):
    run_dir = tmp_path / "off"
    cmd = [
        sys.executable,
        "-m",
        "purerl.experiments.dqn",
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--total-timesteps",
        "4000",
        "--num-logs",
        "2",
        "--learning-starts",
        "500",
        "--checkpoint-every",
        "0",
    ]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (run_dir / "summary.json").exists() and not (run_dir / "checkpoints").exists()


def test_a_short_default_run_keeps_its_final_state_and_can_be_extended(tmp_path):
    run_dir = tmp_path / "short"
    cmd = [
        sys.executable,
        "-m",
        "purerl.experiments.ppo",
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--total-timesteps",
        "4096",
        "--num-logs",
        "2",
    ]
    subprocess.run(cmd, env=ENV, check=True, timeout=300)
    assert (run_dir / "policy.msgpack").exists()
    assert [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()] == ["1"]
    longer = [sys.executable, "-m", "purerl.experiments.ppo", "--resume", str(run_dir)]
    out = subprocess.run(
        [*longer, "--total-timesteps", "8192", "--quiet"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((run_dir / "summary.json").read_text())["total_timesteps"] >= 8192


def test_a_checkpoint_from_an_earlier_version_is_refused_clearly(tmp_path):
    from purerl.experiments import ppo

    run_dir = tmp_path / "old"
    args = ["--run-dir", str(run_dir), "--quiet", "--no-plot", "--num-devices", "1"]
    ppo.main([*args, "--total-timesteps", "8192", "--num-logs", "2", "--checkpoint-every", "4096"])
    host = run_dir / "checkpoints" / "1" / "host" / "metadata"
    saved = json.loads(host.read_text())
    saved.pop("features")  # How checkpoints looked before the run features kept their state.
    host.write_text(json.dumps(saved))
    # A longer run asked for and refused leaves the run's length as it was, so the same
    # command can be retried (it is refused again for its checkpoint, not its length).
    config = (run_dir / "config.json").read_text()
    for _ in range(2):
        with pytest.raises(ValueError, match="written by an earlier purerl"):
            ppo.main(["--resume", str(run_dir), "--quiet", "--total-timesteps", "16384"])
    assert (run_dir / "config.json").read_text() == config


def test_resume_with_a_larger_total_extends_a_finished_run(tmp_path, capsys):
    from purerl.experiments import ppo

    small = ["--num-envs", "8", "--num-steps", "16", "--num-minibatches", "2"]
    common = [*small, "--lr-schedule", "constant", "--quiet", "--no-plot", "--num-devices", "1"]
    ppo.main(
        ["--run-dir", str(tmp_path / "short"), "--total-timesteps", "4096", "--num-logs", "4"]
        + ["--checkpoint-every", "1024", *common]
    )
    summary = ppo.main(["--resume", str(tmp_path / "short"), "--total-timesteps", "8192"])
    assert "extending" in capsys.readouterr().err
    assert summary["total_timesteps"] == 8192
    # The same as a run planned that long from the start (a constant learning rate).
    ppo.main(
        ["--run-dir", str(tmp_path / "long"), "--total-timesteps", "8192", "--num-logs", "8"]
        + common
    )
    assert_same_run(tmp_path / "long", tmp_path / "short")
    assert len(metrics_without_timing(tmp_path / "short")) == 8  # The curves cover it all.
    with pytest.raises(ValueError, match="extends a run, but the run already has 8,192"):
        ppo.main(["--resume", str(tmp_path / "short"), "--total-timesteps", "8000"])


def test_init_from_starts_a_new_run_from_a_saved_agent_where_it_fits(tmp_path, capsys):
    import jax.numpy as jnp
    from purerl.agents.dqn import DQNConfig
    from purerl.agents.registry import get
    from purerl.experiments.engine.build import build_loop
    from purerl.experiments.engine.config import RunConfig
    from purerl.experiments.engine.policy import load_agent
    from purerl.experiments.engine.restore import init_from
    from purerl.experiments.engine.trainer import train

    entry = get("dqn")
    small = DQNConfig(learning_starts=500, buffer_size=2000, batch_size=32, num_envs=4)
    base = RunConfig(total_timesteps=2048, num_logs=2, quiet=True, plot=False, num_devices=1)
    train(entry, dataclasses.replace(base, run_dir=str(tmp_path / "a")), small)
    _, trained, _ = load_agent(tmp_path / "a")
    # Two seeds from one, a new learning rate and another optimizer: its state does not fit.
    config = dataclasses.replace(small, learning_rate=1e-4, optimizer="sgd")
    run = dataclasses.replace(base, num_seeds=2, init_from=str(tmp_path / "a"))
    loop = build_loop(run, lambda c: entry.recipe(config, c)).loop
    try:
        states = loop.agent_states(init_from(loop, loop.init(), run.init_from))
    finally:
        loop.close()
    err = capsys.readouterr().err
    assert "copied params, target_params" in err and "not copied (shapes differ): opt_state" in err
    for seed in range(2):
        chex.assert_trees_all_equal(
            jax.tree.map(lambda x, seed=seed: x[seed], states.params),
            jax.tree.map(lambda x: x[0], trained.params),
        )
    # Counters restart: the new run's schedules (exploration, learning rate) start afresh.
    assert jnp.all(states.steps == 0) and jnp.all(trained.steps[0] > 0)
    # As a whole new run; its config records where it started.
    summary = train(entry, dataclasses.replace(run, run_dir=str(tmp_path / "b")), config)
    assert summary["run_config"]["init_from"] == str(tmp_path / "a")
    other = dataclasses.replace(small, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="nothing of its dqn agent fits"):
        train(entry, dataclasses.replace(run, run_dir=str(tmp_path / "c")), other)


def test_a_mismatched_checkpoint_names_a_known_cause_before_the_general_advice(tmp_path):
    saved = Checkpoints(tmp_path, 2)
    saved.save(0, {"w": np.zeros((1, 64), np.float32)}, {"interval": 0})
    saved.close()
    checkpoints = Checkpoints(tmp_path, 2)
    with pytest.raises(ValueError) as e:
        # A different tree, as a network with other layers has.
        checkpoints.restore_latest({"v": np.zeros((1, 512), np.float32)}, lambda: "KNOWN CAUSE.")
    checkpoints.close()
    lines = str(e.value).splitlines()
    assert "does not match" in lines[0] and lines[1] == "KNOWN CAUSE."
    assert lines[2].startswith("If a stop cut the newest checkpoint short")


def test_a_checkpoint_of_another_purerl_version_says_which_made_it(tmp_path):
    (tmp_path / "config.json").write_text('{"purerl_version": "0.0.1"}')
    saved = Checkpoints(tmp_path, 2)
    saved.save(0, {"w": np.zeros((1, 64), np.float32)}, {"interval": 0})
    saved.close()
    checkpoints = Checkpoints(tmp_path, 2)
    with pytest.raises(ValueError, match="made by purerl 0.0.1; resume it with that version"):
        checkpoints.restore_latest({"v": np.zeros((1, 512), np.float32)}, None)
    checkpoints.close()


def test_a_prioritized_run_saved_with_the_old_sum_tree_layout_resumes_exactly(
    tmp_path, monkeypatch
):
    from purerl.experiments import dqn
    from purerl.replay import prioritized

    # Earlier versions gave every sum-tree level BRANCH ** k entries (65,536 leaves here).
    old_sizes = [prioritized.BRANCH**k for k in range(1, prioritized.tree_depth(5000) + 1)]
    assert old_sizes != prioritized.tree_sizes(5000)
    small = ["--num-envs", "4", "--learning-starts", "512", "--buffer-size", "5000"]
    common = [*small, "--prioritized", "--quiet", "--no-plot", "--num-devices", "1"]

    def run(name):
        dqn.main(
            ["--run-dir", str(tmp_path / name), "--total-timesteps", "2048", "--num-logs", "2"]
            + ["--checkpoint-every", "1024", *common]
        )

    with monkeypatch.context() as patch:
        patch.setattr(prioritized, "tree_sizes", lambda capacity: old_sizes)
        run("old")
    run("new")
    original, converted = prioritized.from_legacy, []

    def counting(restored, runner):
        converted.append(1)
        return original(restored, runner)

    monkeypatch.setattr(prioritized, "from_legacy", counting)
    for name in ("old", "new"):
        dqn.main(["--resume", str(tmp_path / name), "--total-timesteps", "4096"])
    assert converted == [1]  # Only the old run's checkpoint needed converting.
    assert_same_run(tmp_path / "new", tmp_path / "old")


def test_a_checkpoint_of_other_shapes_is_refused_from_its_metadata_naming_the_array(tmp_path):
    saved = Checkpoints(tmp_path, 2)
    saved.save(0, {"net": {"w": np.zeros((1, 64), np.float32)}}, {"interval": 0})
    saved.close()
    checkpoints = Checkpoints(tmp_path, 2)
    assert checkpoints.saved_shapes() == {"net/w": (1, 64)}
    with pytest.raises(ValueError) as e:  # A wider layer, say.
        checkpoints.restore_latest({"net": {"w": np.zeros((1, 512), np.float32)}})
    checkpoints.close()
    assert "net/w has shape (1, 64) there and (1, 512) here" in str(e.value)
    assert e.value.__cause__ is None  # Refused before orbax read any array.
