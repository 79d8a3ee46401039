"""A package outside purerl adds an agent through the `purerl.agents` entry point
(examples/purerl_plugin_example, a Q-learner) and gets the whole command line: `purerl --help`
lists it, `purerl qlearn` trains it, `--sweep`, `--resume` (of an interrupted run, and of a
finished one with a longer `--total-timesteps`) and `--init-from` work, and `load_policy` and
`purerl enjoy` load what it trained.

The package is "installed" in-process, as pip would leave it for purerl to read: its
distribution's metadata (a `*.dist-info` folder with the entry points its `pyproject.toml`
declares) and its source folder on `sys.path`.
"""

import importlib
import json
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import purerl
import pytest
from purerl.agents import registry
from purerl.experiments.command import purerl_main
from purerl.experiments.engine import features
from purerl.experiments.engine.policy import load_agent

from tests.helpers import CARTPOLE_SPEC, assert_k_of_n, replay_sample, transitions

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "purerl_plugin_example"
KEY = jax.random.PRNGKey(0)
SOURCE = "purerl_qlearn.qlearn:QLearnConfig"
# A small Q-learner on gymnax's CartPole: each run compiles in seconds and trains in less.
SMALL = [
    "--env",
    "CartPole-v1",
    "--num-envs",
    "4",
    "--hidden-size",
    "16",
    "--batch-size",
    "32",
    "--buffer-size",
    "1024",
    "--learning-starts",
    "64",
    "--num-devices",
    "1",
    "--no-plot",
    "--no-tensorboard",
    "--quiet",
]


def declared_entry_points() -> list[tuple[str, str]]:
    """The `purerl.agents` entry points the example's `pyproject.toml` declares."""
    text = (PLUGIN / "pyproject.toml").read_text()
    section = text.split('[project.entry-points."purerl.agents"]', 1)[1].split("\n[", 1)[0]
    return re.findall(r'^\s*([\w-]+)\s*=\s*"([^"]+)"', section, re.MULTILINE)


def install(site: Path) -> None:
    """What `pip install examples/purerl_plugin_example` leaves for purerl to read: the
    distribution's metadata with its entry points."""
    dist = site / "purerl_plugin_example-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: purerl-plugin-example\nVersion: 0.1.0\n"
    )
    points = "".join(f"{name} = {value}\n" for name, value in declared_entry_points())
    (dist / "entry_points.txt").write_text(f"[purerl.agents]\n{points}")


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The example package installed (in-process) for this module's tests; the registry,
    `sys.path`, `sys.argv` and the imported modules are as they were afterwards."""
    site = tmp_path_factory.mktemp("site-packages")
    install(site)
    saved = dict(registry._REGISTRY), registry._plugins_loaded, list(sys.path), list(sys.argv)
    sys.path[:0] = [str(site), str(PLUGIN)]
    importlib.invalidate_caches()
    registry._plugins_loaded = False  # Read the entry points again, with this one.
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved[0])
    registry._plugins_loaded = saved[1]
    sys.path[:], sys.argv[:] = saved[2], saved[3]
    for name in [m for m in sys.modules if m.split(".")[0] == "purerl_qlearn"]:
        del sys.modules[name]


def cli(*argv: str) -> None:
    """The `purerl` command, as a user types it."""
    purerl_main([str(a) for a in argv])


def config(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def trained(plugin, tmp_path_factory):
    """A short run of the plugin's agent, trained by `purerl qlearn`."""
    run_dir = tmp_path_factory.mktemp("runs") / "qlearn"
    cli("qlearn", *SMALL, "--total-timesteps", 2048, "--num-logs", 2, "--run-dir", run_dir)
    return run_dir


def test_the_example_declares_its_agent_in_the_purerl_agents_group():
    assert declared_entry_points() == [("qlearn", SOURCE)]


def test_the_agent_takes_a_learning_step_and_acts_greedily(plugin):
    qlearn = importlib.import_module("purerl_qlearn.qlearn")
    config = qlearn.QLearnConfig(hidden_size=8, tau=0.5)
    agent = qlearn.make(config)
    state = agent.init(KEY, CARTPOLE_SPEC)
    new, metrics = jax.jit(agent.learn)(state, replay_sample(transitions(KEY, (16,))), KEY)
    assert int(new.steps) == 1 and all(np.isfinite(float(v)) for v in metrics.values())
    for p, new_p, target in zip(
        *map(jax.tree.leaves, (state.params, new.params, new.target_params)), strict=True
    ):
        assert not np.allclose(p, new_p)
        np.testing.assert_allclose(target, 0.5 * p + 0.5 * new_p, rtol=1e-6)  # Polyak, tau.
    obs = jax.random.normal(KEY, (5, 4))
    action, carry, _ = jax.jit(agent.act, static_argnums=4)(new, (), obs, KEY, True)
    assert action.shape == (5,) and carry == ()
    q = new.network.apply(new.params, obs)
    np.testing.assert_array_equal(action, jnp.argmax(q, axis=-1))


def test_help_lists_the_plugin_agent_beside_purerls_own(plugin, capsys):
    cli("--help")
    lines = capsys.readouterr().out.splitlines()
    (line,) = [x for x in lines if x.split()[:1] == ["qlearn"]]
    assert SOURCE in line and line.endswith("(plugin)")
    (ppo,) = [x for x in lines if x.split()[:1] == ["ppo"]]
    assert "(plugin)" not in ppo
    # Its own options are flags, generated from its config.
    with pytest.raises(SystemExit) as e:
        cli("qlearn", "--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--epsilon-decay-steps" in out and "--total-timesteps" in out


def test_purerl_qlearn_trains_and_records_where_the_agent_comes_from(trained):
    saved = config(trained)
    assert saved["agent"] == "qlearn" and saved["agent_source"] == SOURCE
    assert saved["agent_config"]["hidden_size"] == 16 and "factory" not in saved
    done = summary(trained)
    assert done["agent"] == "qlearn" and done["loop"] == "device"
    assert done["total_timesteps"] == 2048 and np.isfinite(done["final_return"][0])
    assert (trained / "policy.msgpack").is_file() and (trained / "metrics.csv").is_file()


def test_load_policy_and_enjoy_load_the_plugin_run(trained, capsys):
    policy = purerl.load_policy(trained)
    assert repr(policy) == "Policy(qlearn on CartPole-v1, seed index 0, feed-forward)"
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    actions = policy(obs, jax.random.PRNGKey(1))
    assert actions.shape == (5,) and actions.dtype == jnp.int32
    # The greedy action of the saved Q-network.
    _, states, _ = load_agent(trained)
    state = jax.tree.map(lambda x: x[0], states)
    np.testing.assert_array_equal(
        actions, jnp.argmax(state.network.apply(state.params, obs), axis=-1)
    )
    cli("enjoy", trained, "--episodes", 2)
    out = capsys.readouterr().out
    assert "qlearn on CartPole-v1 (seed index 0): return" in out and "over 2 episodes" in out


def test_a_plugin_run_loads_from_its_recorded_config_class_without_the_entry_point(
    trained, monkeypatch
):
    # The package importable, its entry point gone (another environment, an older install):
    # the run records its config class, and that is enough.
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_plugins_loaded", True)
    del registry._REGISTRY["qlearn"]
    with pytest.raises(ValueError, match="Unknown agent 'qlearn'"):
        registry.get("qlearn")
    assert purerl.load_policy(trained)(jnp.zeros((2, 4)), jax.random.PRNGKey(0)).shape == (2,)


def test_sweep_trains_a_grid_of_the_plugins_float_options(plugin, tmp_path, capsys):
    run_dir = tmp_path / "sweep"
    cli(
        "qlearn",
        *SMALL,
        "--total-timesteps",
        1024,
        "--num-logs",
        1,
        "--sweep",
        "learning_rate=1e-3,3e-3",
        "--run-dir",
        run_dir,
    )
    assert "best of 2 configurations: learning_rate=" in capsys.readouterr().out
    done = summary(run_dir)
    assert [c["learning_rate"] for c in done["sweep_configs"]] == [1e-3, 3e-3]
    assert len((run_dir / "sweep.csv").read_text().splitlines()) == 3  # Header, 2 runs.
    assert purerl.load_policy(run_dir, seed_index=1)(jnp.zeros((1, 4)), KEY).shape == (1,)
    # A structural option changes the program's shapes: refused, naming those that can be.
    with pytest.raises(SystemExit) as e:
        cli("qlearn", *SMALL, "--sweep", "hidden_size=16,32", "--run-dir", tmp_path / "no")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--sweep hidden_size: a structural option of QLearnConfig" in err
    assert "learning_rate, gamma, tau, epsilon_start, epsilon_end" in err


def stop_after_first_interval(monkeypatch):
    """Ctrl-C during the first logging interval: the run stops at its end, once saved."""
    original = features.StopRequest.on_interval

    def on_interval(self, interval):
        self.requested = True
        original(self, interval)

    monkeypatch.setattr(features.StopRequest, "on_interval", on_interval)


def test_an_interrupted_plugin_run_resumes_and_a_finished_one_extends(
    plugin, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "stopped"
    argv = [*SMALL, "--total-timesteps", 2048, "--num-logs", 2, "--checkpoint-every", 1024]
    with monkeypatch.context() as patch:
        stop_after_first_interval(patch)
        with pytest.raises(SystemExit) as e:
            cli("qlearn", *argv, "--run-dir", run_dir)
    assert e.value.code == 130
    assert f"stopped after 1,024 steps; continue with --resume {run_dir}" in capsys.readouterr().err
    assert not (run_dir / "summary.json").exists()
    # Its policy loads from the checkpoint meanwhile.
    assert purerl.load_policy(run_dir)(jnp.zeros((1, 4)), KEY).shape == (1,)
    cli("qlearn", "--resume", run_dir, "--quiet")
    assert summary(run_dir)["total_timesteps"] == 2048
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 2
    # A finished run goes on with a longer --total-timesteps (here through `purerl resume`).
    cli("resume", run_dir, "--total-timesteps", 4096, "--quiet")
    assert "extending" in capsys.readouterr().err
    assert summary(run_dir)["total_timesteps"] == 4096
    assert config(run_dir)["run"]["total_timesteps"] == 4096
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 4
    # Without a longer total it is complete: refused, saying what to do.
    with pytest.raises(SystemExit) as e:
        cli("qlearn", "--resume", run_dir, "--quiet")
    assert e.value.code == 2 and "is complete" in capsys.readouterr().err


def test_init_from_starts_a_new_plugin_run_from_a_trained_one(trained, tmp_path, capsys):
    run_dir = tmp_path / "fine-tuned"
    # A learning rate so small that the parameters stay where they started.
    tiny = ["--learning-rate", "1e-9", "--total-timesteps", 1024, "--num-logs", 1]
    cli("qlearn", *SMALL, *tiny, "--init-from", trained, "--run-dir", run_dir)
    err = capsys.readouterr().err
    assert f"starting from {trained}'s qlearn agent: copied params, target_params, opt_state" in err
    assert config(run_dir)["run"]["init_from"] == str(trained)
    _, source, _ = load_agent(trained)
    _, tuned, _ = load_agent(run_dir)
    assert int(source.steps[0]) > 0 and int(tuned.steps[0]) > 0  # Both trained.
    for a, b in zip(jax.tree.leaves(source.params), jax.tree.leaves(tuned.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_the_plugin_agent_learns_cartpole_over_four_vmapped_seeds(plugin, tmp_path):
    # Measured after 150,000 steps (16 seeds vmapped, 1 CPU device, twice): 32 seeds at 209
    # to 500, median about 380; random actions score about 22.
    run_dir = tmp_path / "learn"
    cli(
        "qlearn",
        "--env",
        "CartPole-v1",
        "--total-timesteps",
        150_000,
        "--num-seeds",
        4,
        "--num-devices",
        1,
        "--no-plot",
        "--quiet",
        "--run-dir",
        run_dir,
    )
    assert_k_of_n(summary(run_dir)["final_return"], 3, 150, "qlearn on CartPole-v1")
