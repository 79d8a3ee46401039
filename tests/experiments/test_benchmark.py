"""`python -m purerl.experiments.benchmark --help` names the command, not a file, and says
each default once."""

import pathlib
import runpy

import pytest
from purerl.experiments import benchmark


def test_help_names_the_module_and_says_each_default_once(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # One line per option.
    with pytest.raises(SystemExit) as e:
        benchmark.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m purerl.experiments.benchmark ")
    assert "Trains an agent and prints the summary's figures" in text
    devices = next(line for line in text.splitlines() if "--num-devices" in line)
    assert "devices to run on. (default: all local devices)" in devices
    assert "None" not in devices
    assert benchmark._return(None) == benchmark._return(float("nan")) == "—"


def test_kernels_of_a_program_count_each_loop_by_its_trip_count():
    import jax
    import jax.numpy as jnp

    def f(x, w):
        def body(c, _):
            return jnp.tanh(c @ w), None

        return jax.lax.scan(body, x, None, length=3)[0]

    text = jax.jit(f).lower(jnp.ones((4, 4)), jnp.ones((4, 4))).compile().as_text()
    computations, entry = benchmark.parse_hlo(text)
    total = benchmark.executed_kernels(computations, entry)
    assert total["dot"] == 3  # One matmul per step; the tanh is a fusion of its own or not.
    (line,) = benchmark.loop_tree(computations, entry)
    assert line.startswith("loop x3: ") and "1 dot" in line
    loops_apart = benchmark.executed_kernels(computations, entry, loops=False)
    assert loops_apart["dot"] == 0 and loops_apart.total() < total.total()
    with pytest.raises(ValueError, match="ENTRY"):
        benchmark.parse_hlo("HloModule empty")


def test_profile_prints_kernels_and_time_per_update(capsys):
    flags = "--num-envs 2 --num-steps 8 --update-epochs 1 --num-minibatches 2 --num-logs 2"
    argv = ["--profile", "--total-timesteps", "64", "--num-devices", "1", f"--extra={flags}"]
    benchmark.main(argv)
    text = capsys.readouterr().out
    assert "one interval's program: 2 updates of 16 env steps" in text
    assert "per update" in text and "loop x8:" in text  # The rollout's 8 steps.
    assert "ms per update" in text and "compile" in text
    # benchmarks/profile_agents.py reads these lines into its table.
    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "profile_agents.py"
    row = runpy.run_path(str(script))["parse"](text, "ppo", "CartPole-v1")
    assert row["env steps per update"] == "16" and float(row["ms per update"]) > 0
    assert float(row["kernels per update"].replace(",", "")) > 100


def test_profile_of_a_python_env_says_it_needs_a_jax_one():
    with pytest.raises(ValueError, match="profile a JAX environment"):
        benchmark.main(["--profile", "--env", "gymnasium:CartPole-v1"])
