"""The trainer's pieces, each on its own: the run directory (`rundir`), where a run starts
from (`restore`: extending, what may be resumed, `--init-from`'s counter rule), the closing
line (`summary`) and how a saved run names what trained it (`trainee.from_saved`)."""

import dataclasses
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from purerl.agents import registry
from purerl.agents.dqn import C51Config, DQNConfig
from purerl.agents.ppo import PPOConfig
from purerl.core import Context, Recipe
from purerl.experiments.engine import restore, rundir, summary, trainee
from purerl.experiments.engine.config import Plan, RunConfig
from purerl.experiments.engine.policy import load_agent
from purerl.experiments.engine.sweep import Sweep
from purerl.experiments.engine.trainer import resumed_run, train
from purerl.replay import Schedule, on_policy

from examples.reinforce import make_reinforce


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its contents: to check that nothing was written."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# rundir -----------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["summary.json", "policy.msgpack", "checkpoints/3/host"])
def test_prepare_refuses_a_directory_that_holds_a_run(tmp_path, what):
    (tmp_path / what).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / what).write_text("{}")
    before = snapshot(tmp_path)
    run = RunConfig(run_dir=str(tmp_path))
    with pytest.raises(ValueError) as e:
        rundir.prepare("ppo", run, {"agent": "ppo"}, None, write=True)
    assert str(e.value) == (
        f"{tmp_path} already holds a run. Continue it with --resume {tmp_path}, or choose "
        "another --run-dir."
    )
    assert snapshot(tmp_path) == before


def test_prepare_refuses_a_file_and_writes_nothing_without_write(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a run")
    with pytest.raises(ValueError, match=f"--run-dir {path} is a file, not a directory; choose"):
        rundir.prepare("ppo", RunConfig(run_dir=str(path)), {"agent": "ppo"}, None, write=True)
    # Process 1+ of a multi-host run checks, but does not write.
    fresh = tmp_path / "new"
    run = RunConfig(run_dir=str(fresh))
    assert rundir.prepare("ppo", run, {"agent": "ppo"}, None, write=False) == fresh
    assert not fresh.exists()


def test_prepare_starts_afresh_over_a_start_that_never_trained(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()  # Empty: no checkpoint was completed.
    (tmp_path / "config.json").write_text('{"agent": "old"}')
    run = RunConfig(run_dir=str(tmp_path), total_timesteps=1234)
    record = {"agent": "ppo", "agent_source": "purerl.agents.ppo:PPOConfig"}
    assert rundir.prepare("ppo", run, record, PPOConfig(), write=True) == tmp_path
    assert "holds the config of a run that never trained" in capsys.readouterr().err
    saved = rundir.read_config(tmp_path)
    assert saved["agent"] == "ppo" and saved["run"]["total_timesteps"] == 1234
    assert saved["agent_config"]["num_envs"] == PPOConfig().num_envs
    # A resumed run's directory is its own, as given.
    resumed = RunConfig(resume=str(tmp_path / "elsewhere"))
    assert rundir.prepare("ppo", resumed, record, None, True) == tmp_path / "elsewhere"


def test_read_config_says_what_is_wrong_and_what_to_give(tmp_path):
    missing, a_file, empty = tmp_path / "missing", tmp_path / "file", tmp_path / "empty"
    a_file.write_text("")
    empty.mkdir()
    for path, wrong, todo in (
        (missing, "no such directory", "Give a run directory"),
        (a_file, "is a file, not a run directory", "give the directory a run wrote"),
        (empty, "has no config.json, so it is not a purerl run directory", "give the directory"),
    ):
        with pytest.raises(ValueError) as e:
            rundir.read_config(path, "--resume")
        assert str(e.value).startswith(f"--resume {path}") and wrong in str(e.value)
        assert todo in str(e.value)
    (empty / "config.json").write_text('{"run": {}}')  # No agent.
    with pytest.raises(ValueError, match="config.json is not a purerl run config"):
        rundir.read_config(empty)


# restore: extending and what may be resumed ------------------------------------------------


def test_extended_continues_in_intervals_of_the_same_length():
    run = RunConfig(total_timesteps=2048, num_logs=2)
    planned = Plan(steps_per_update=256, updates_per_interval=4, num_intervals=2)  # 1,024 each.
    longer = restore.extended(run, planned, 3000)
    assert (longer.total_timesteps, longer.num_logs) == (3072, 3)  # Rounded up to intervals.
    assert dataclasses.replace(longer, total_timesteps=2048, num_logs=2) == run
    for total in (2048, 1000):
        with pytest.raises(ValueError) as e:
            restore.extended(run, planned, total)
        assert f"--total-timesteps {total:,} with --resume extends a run" in str(e.value)
        assert "the run already has 2,048 steps; give more" in str(e.value)


def test_check_resumable_refuses_a_finished_run_without_a_longer_total(tmp_path):
    (tmp_path / "checkpoints" / "1").mkdir(parents=True)
    with pytest.raises(ValueError) as e:
        restore.check_resumable(tmp_path, finished=True, extending=False)
    message = str(e.value)
    assert f"{tmp_path} is complete" in message
    assert f"--resume {tmp_path} --total-timesteps N" in message and "--init-from" in message
    restore.check_resumable(tmp_path, finished=True, extending=True)  # Extending: fine.
    restore.check_resumable(tmp_path, finished=False, extending=False)  # Interrupted: fine.


def test_check_resumable_refuses_a_run_without_checkpoints(tmp_path):
    for folder in (tmp_path, tmp_path / "checkpoints"):  # None, or only an unfinished write.
        folder.mkdir(exist_ok=True)
        for extending in (False, True):
            with pytest.raises(ValueError) as e:
                restore.check_resumable(tmp_path, finished=False, extending=extending)
            assert f"{tmp_path} has no checkpoint to continue from" in str(e.value)
            assert f"--init-from {tmp_path}" in str(e.value)


def saved_run(run_dir: Path, **run: object) -> dict:
    """A run directory as a PPO run leaves it (its config, and `checkpoints/1`), read back."""
    entry = registry.get("ppo")
    config = PPOConfig(num_envs=4, num_steps=16)
    run_dir.mkdir()
    settings = RunConfig(run_dir=str(run_dir), total_timesteps=2048, num_logs=2, **run)
    rundir.write_config(run_dir, settings, trainee.registered(entry, config).record, config)
    (run_dir / "checkpoints" / "1").mkdir(parents=True)
    return rundir.read_config(run_dir)


def test_a_refused_resume_writes_nothing_into_the_run(tmp_path):
    finished, bare = tmp_path / "finished", tmp_path / "bare"
    saved = saved_run(finished)
    (finished / "summary.json").write_text("{}")
    build = trainee.from_saved(saved).build
    for total, match in ((None, "is complete"), (1024, "the run already has 2,048 steps")):
        before = snapshot(finished)
        with pytest.raises(ValueError, match=match):
            resumed_run(saved, str(finished), total, build)
        assert snapshot(finished) == before
    saved = saved_run(bare)
    (bare / "checkpoints" / "1").rmdir()
    before = snapshot(bare)
    with pytest.raises(ValueError, match="has no checkpoint to continue from"):
        resumed_run(saved, str(bare), 4096, build)
    assert snapshot(bare) == before
    # One that can go on: the run's own config, set to resume it and extended.
    (bare / "checkpoints" / "1").mkdir()
    run = resumed_run(saved, str(bare), 4096, build, quiet=True)
    assert (run.resume, run.run_dir, run.total_timesteps, run.quiet) == (
        str(bare),
        str(bare),
        4096,
        True,
    )
    assert snapshot(bare) == before  # The new length is written once its checkpoint loads.


# restore: --init-from ---------------------------------------------------------------------

PPO_SMALL = PPOConfig(
    num_envs=4, num_steps=16, num_minibatches=2, update_epochs=1, hidden_sizes=(16,)
)
PPO_RUN = RunConfig(total_timesteps=512, num_logs=1, num_devices=1, plot=False, quiet=True)


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """A tiny PPO run with its defaults' linear learning-rate decay to 0."""
    run_dir = tmp_path_factory.mktemp("runs") / "ppo"
    train(registry.get("ppo"), dataclasses.replace(PPO_RUN, run_dir=str(run_dir)), PPO_SMALL)
    return run_dir


class StatesOnly:
    """A loop whose runner is its agent states: what `init_from` reads and writes."""

    @staticmethod
    def agent_states(runner):
        return runner

    @staticmethod
    def with_agent_states(runner, states):
        return states


def is_count(x) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.integer)


def test_init_from_copies_float_leaves_and_restarts_integer_counters(ppo_run, capsys):
    _, source, _ = load_agent(ppo_run)
    # This run's own agent states, two seeds: every leaf 3.
    mine = jax.tree.map(lambda x: np.full((2,) + np.shape(x)[1:], 3, np.asarray(x).dtype), source)
    states = restore.init_from(StatesOnly(), mine, str(ppo_run))
    assert f"starting from {ppo_run}'s ppo agent: copied params, opt_state" in (
        capsys.readouterr().err
    )
    pairs = list(zip(jax.tree.leaves(states), jax.tree.leaves(source), strict=True))
    counts = [got for got, _ in pairs if is_count(got)]
    assert len(counts) >= 2  # The learner's update count and the optimizer's step counts.
    for got, theirs in pairs:
        if is_count(got):  # This run's counters: its schedules start at their start.
            np.testing.assert_array_equal(got, np.full_like(got, 3))
        else:  # Parameters and moments: the source's, its one seed given to both.
            np.testing.assert_array_equal(got, np.broadcast_to(theirs, got.shape))
    assert np.all(source.steps > 0)


def test_a_fine_tuned_ppo_run_moves_from_its_source_under_the_linear_schedule(ppo_run, tmp_path):
    # Issue 29, item 1: the counters copied with the parameters put PPO's linear learning
    # rate at its end (0), so a run started --init-from a finished one never moved.
    assert PPOConfig().lr_schedule == "linear"
    run = dataclasses.replace(PPO_RUN, run_dir=str(tmp_path / "tuned"), init_from=str(ppo_run))
    result = train(registry.get("ppo"), run, PPO_SMALL)
    _, source, _ = load_agent(ppo_run)
    tuned = result.agent_states
    moved = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(jax.tree.leaves(source.params), jax.tree.leaves(tuned.params), strict=True)
    )
    assert moved > 1e-6
    # Its update count is its own run's, not the source's plus its own.
    np.testing.assert_array_equal(tuned.steps, source.steps)


# summary ----------------------------------------------------------------------------------


def ended(**fields: object) -> dict:
    return {
        "final_return": [math.nan, 12.5],
        "final_return_mean": 12.5,
        "eval_episodes": 0,
        "eval_return_mean": math.nan,
        "steps_per_second": 12345.6,
        "compile_seconds": 1.04,
        "train_seconds": 2.0,
        **fields,
    }


def test_closing_line_shows_a_seed_without_a_finished_episode_as_a_dash(tmp_path):
    tail = f"12,346 steps/s, compile 1.0s, train 2.0s -> {tmp_path / 'summary.json'}"
    assert summary.closing_line(ended(), tmp_path) == (
        f"done: final return 12.50 (per seed —, 12.50), {tail}"
    )
    none = ended(final_return=[math.nan], final_return_mean=math.nan)
    assert summary.closing_line(none, tmp_path) == f"done: final return — (per seed —), {tail}"
    evaluated = ended(eval_episodes=5, eval_return_mean=99.0)
    assert "(per seed —, 12.50), eval return 99.00, 12,346" in (
        summary.closing_line(evaluated, tmp_path)
    )


def test_closing_line_of_a_sweep_ends_with_its_best_configuration(tmp_path):
    sweep = Sweep(("learning_rate", "gamma"), ((1e-3, 0.9), (3e-3, 0.9), (1e-2, 0.99)))
    ranked = [
        {"learning_rate": 3e-3, "gamma": 0.9, "final_return_mean": 80.0},
        {"learning_rate": 1e-3, "gamma": 0.9, "final_return_mean": math.nan},
    ]
    line = summary.closing_line(ended(sweep=ranked, eval_episodes=5), tmp_path, sweep)
    assert line.startswith(
        "done: best of 3 configurations: learning_rate=0.003, gamma=0.9, final return 80.00, "
        "12,346 steps/s"
    )
    assert "eval return" not in line  # Each configuration's is in the ranking above it.


# trainee.from_saved -----------------------------------------------------------------------


def test_from_saved_rebuilds_a_registered_agent_with_its_config():
    entry = registry.get("dqn")
    config = DQNConfig(hidden_sizes=(32, 32), learning_rate=1e-3)
    saved = json.loads(
        json.dumps({**trainee.registered(entry, config).record, "agent_config": vars(config)})
    )
    who = trainee.from_saved(saved)
    assert who.name == "dqn" and who.entry.name == "dqn"
    assert who.config == config  # JSON's lists back as tuples.
    assert who.record == {"agent": "dqn", "agent_source": "purerl.agents.dqn:DQNConfig"}
    assert isinstance(who.build(Context()), Recipe)
    with pytest.raises(ValueError, match="does not fit this version's purerl.agents.dqn:DQN"):
        trainee.from_saved({**saved, "agent_config": {"no_such_option": 1}})


def test_from_saved_rebuilds_an_unregistered_agent_from_its_recorded_config_class():
    # A plugin's run where its package's entry point is gone: its config class is enough.
    saved = {"agent": "my-c51", "agent_source": "purerl.agents.dqn:C51Config"}
    who = trainee.from_saved({**saved, "agent_config": {"num_atoms": 11}})
    assert who.name == "my-c51" and who.config == C51Config(num_atoms=11)


def test_from_saved_rebuilds_an_agent_of_your_own_from_its_factory():
    saved = {
        "agent": "reinforce",
        "factory": "examples.reinforce:make_recipe",
        "recipe": {"num_envs": None, "discount": None},
    }
    who = trainee.from_saved(saved)
    assert who.name == "reinforce" and who.config is None
    assert who.record["factory"] == "examples.reinforce:make_recipe"
    assert who.build(Context()).num_envs == 8  # The factory's own Recipe.
    with pytest.raises(ValueError) as e:  # A factory that no longer imports: what to pass.
        trainee.from_saved({**saved, "factory": "no_such_package.agents:make"})
    assert "no_such_package" in str(e.value) and "load_policy(run_dir, agent=AGENT)" in str(e.value)


def test_from_saved_without_a_factory_takes_the_agent_or_says_to_pass_it():
    saved = {"agent": "myq", "recipe": {"num_envs": 4, "discount": 0.9}}
    with pytest.raises(ValueError) as e:
        trainee.from_saved(saved)
    message = str(e.value)
    assert "'myq' is not registered and the run records no factory" in message
    assert "load_policy(run_dir, agent=AGENT)" in message and "resume=run_dir" in message
    agent = make_reinforce()
    who = trainee.from_saved(saved, agent=Recipe(agent, on_policy(), Schedule(16), 4))
    assert who.name == "myq" and who.build(Context()).agent is agent


def test_program_options_are_cpu_only_and_known_to_this_jaxlib(monkeypatch):
    from purerl.experiments.engine import loop

    assert loop.program_options("gpu") == {}
    lowered = jax.jit(lambda x: x @ x.T + 1).lower(np.ones((8, 8), np.float32))
    for avx512 in (False, True):
        monkeypatch.setattr(loop, "_has_avx512", lambda avx512=avx512: avx512)
        options = loop.program_options("cpu")
        assert ("xla_cpu_prefer_vector_width" in options) == avx512
        # Compiles with every option: a jaxlib that dropped one would fall back silently.
        compiled = lowered.compile(compiler_options=options)
        np.testing.assert_allclose(compiled(np.ones((8, 8), np.float32)), 9.0)


def test_compile_program_falls_back_to_the_defaults_for_an_unknown_option(monkeypatch):
    from purerl.experiments.engine import loop

    lowered = jax.jit(lambda x: x + 1).lower(np.ones(3, np.float32))
    monkeypatch.setattr(loop, "program_options", lambda platform: {"xla_cpu_no_such": True})
    with pytest.warns(UserWarning, match="xla_cpu_no_such.*default options"):
        compiled = loop.compile_program(lowered, "cpu")
    np.testing.assert_allclose(compiled(np.ones(3, np.float32)), 2.0)
