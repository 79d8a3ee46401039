"""Presets: what an agent's bare command uses, per env family, where no flag sets it.

A config class may declare `presets = {KEY: {option: value}}`, keyed by action-space kind
("discrete" / "continuous") and by env id (applied on top). The command line applies the
preset's values to the options the user did not set on the command line or in `--config`,
and names them on one line; a preset may set run options (`total_timesteps`) too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from purerl.experiments.cli import _config_path
from purerl.experiments.engine.config import RunConfig


def given_options(argv: list[str]) -> set[str]:
    """The option names (`num_envs`) set on the command line or in its `--config` file."""
    names = set()
    for arg in argv:
        if arg.startswith("--"):
            flag = arg[2:].split("=", 1)[0].replace("-", "_")
            names.add(flag)
            names.add(flag.removeprefix("no_"))
    path = _config_path(argv)
    if path is not None:
        import yaml

        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            values = {}  # `parse` has refused an unreadable file already.
        names |= {str(k).replace("-", "_") for k in values} if isinstance(values, dict) else set()
    return names


def preset_for(config: Any, env: str, action_space: Any) -> tuple[str, dict[str, Any]]:
    """The agent's preset for this env, `(its name, the option values)`: the config class's
    `presets` by action-space kind ("discrete" / "continuous"), then by env id on top."""
    import gymnasium

    presets = getattr(type(config), "presets", None) or {}
    kind = "continuous" if isinstance(action_space, gymnasium.spaces.Box) else "discrete"
    values: dict[str, Any] = {}
    names = []
    for key in (kind, env.removeprefix("gymnasium:")):
        if key in presets:
            values.update(presets[key])
            names.append(f"{key} actions" if key == kind else key)
    return " + ".join(names), values


def with_preset(
    config: Any, run: RunConfig, given: set[str], quiet: bool = False
) -> tuple[RunConfig, Any]:
    """`(run, config)` with the agent's preset for `run.env` in the options the user did not
    set (a preset may set run options too, e.g. `total_timesteps`), named on one line: an
    agent's bare command is a sensible start on every env family its config has a preset
    for, and any flag overrides it."""
    if not getattr(type(config), "presets", None):
        return run, config
    from purerl import envs
    from purerl.experiments.engine import distributed

    try:
        if envs.resolve(run.env)[0] == "device":  # Its spaces start JAX: join the others first.
            distributed.initialize(run)
        space = envs.spec(run.env, run.env_params).action_space
    except Exception:  # An env that cannot be made: training says why, clearly.
        return run, config
    name, values = preset_for(config, run.env, space)
    values = {k: v for k, v in values.items() if k not in given}
    if not values:
        return run, config
    if not quiet:
        flags = " ".join(
            f"--{k.replace('_', '-')} {v:g}"
            if isinstance(v, float)
            else f"--{k.replace('_', '-')} {v}"
            for k, v in values.items()
        )
        print(f"preset for {name}: {flags} (any of these flags overrides it)", flush=True)
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    run = dataclasses.replace(run, **{k: v for k, v in values.items() if k in run_fields})
    agent = {k: v for k, v in values.items() if k not in run_fields}
    return run, dataclasses.replace(config, **agent)
