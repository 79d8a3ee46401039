"""Every `purerl` command the README shows runs, with a short budget: what a newcomer copies
from it works. The README's Python examples are run too (a trained run loads; an agent acts).

The budgets are cut by flags appended to each command (the last value of a flag wins); the
few placeholders (RUN_DIR, my_run.yaml) and the one full `check-envs` sweep are replaced
below, each said why."""

from __future__ import annotations

import re
import shlex
import shutil
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
SHORT = ["--total-timesteps", "4096", "--num-logs", "2", "--quiet", "--no-plot"]
# The tests' JAX has 4 CPU devices (conftest.py); a user's command picks its own count.
SHORT += ["--num-devices", "1"]
# Placeholders and budgets a test cannot take as written.
REPLACE = {
    "[RUN_DIR ...] ": "",  # plot: one run is enough.
    "--eval-every 50000": "--eval-every 2048",  # Within the short budget.
    "--total-timesteps 1000000": "--total-timesteps 8192",  # resume: extend, but briefly.
    "check-envs": "check-envs --agents ppo dqn --envs CartPole-v1 --steps 2048",  # Not all.
    "--num-seeds 8": "--num-seeds 2",
}


def readme_commands() -> list[str]:
    """The `purerl ...` lines of the README's bash blocks, without their comments."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            line = line.split("&& ", 1)[-1]  # The set-up line's command after its install.
            if line.startswith("purerl "):
                commands.append(line)
    return commands


def readme_python() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_shows_the_commands_this_test_runs() -> None:
    commands = readme_commands()
    assert len(commands) >= 15, commands
    assert commands[0] == "purerl ppo --env CartPole-v1"  # The quick start's.
    for old in REPLACE:
        assert any(old in c for c in commands), f"README no longer has {old!r}: update REPLACE"


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from purerl.agents import registry
    from purerl.experiments.command import purerl_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_run.yaml").write_text("learning_rate: 0.001\nnum_envs: 4\n")
    run_dir = tmp_path / "first_run"
    agents = set(registry.names())
    for i, line in enumerate(readme_commands()):
        for old, new in REPLACE.items():
            line = line.replace(old, new)
        target_dir = run_dir
        if line == "purerl resume RUN_DIR":  # "a stopped run": the first, its end not written.
            target_dir = tmp_path / "stopped_run"
            shutil.copytree(run_dir, target_dir)
            (target_dir / "summary.json").unlink()
        argv = shlex.split(line.replace("RUN_DIR", str(target_dir)))[1:]
        if argv[0] in agents:
            target = run_dir if i == 0 else tmp_path / f"run_{i}"
            argv += [*SHORT, "--run-dir", str(target)]
        elif argv[0] == "plot":
            argv[argv.index("curves.png")] = str(tmp_path / "curves.png")
        try:
            purerl_main(argv)
        except SystemExit as e:
            assert not e.code, f"`{line}` exited with {e.code}"
    assert (run_dir / "summary.json").is_file() and (tmp_path / "curves.png").is_file()
    assert (tmp_path / "stopped_run" / "summary.json").is_file()  # The resume finished it.

    # The research-code examples, on the run the quick start made.
    load, use = readme_python()[:2]
    namespace: dict = {}
    code = load.replace("runs/ppo_CartPole-v1_20261126-190000", str(run_dir))
    code = code.replace("obs_batch", "jax.numpy.zeros((3, 4))")
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["action"].shape == (3,)
    exec(compile(textwrap.dedent(use), "README.md", "exec"), namespace)
    assert namespace["action"].shape == (8,)
