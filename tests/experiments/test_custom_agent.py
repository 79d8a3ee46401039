"""A researcher's own agent (examples/reinforce.py) trained by `purerl.train` on both loops."""

import json

import pytest

from examples.reinforce import main


@pytest.mark.slow
def test_reinforce_learns_cartpole_on_the_device_loop(tmp_path):
    summary = main(run_dir=str(tmp_path / "dev"), quiet=True, num_devices=1, eval_episodes=2)
    assert summary["agent"] == "reinforce" and summary["loop"] == "device"
    assert summary["final_return"][0] >= 300
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
