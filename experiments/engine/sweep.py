"""Hyperparameter sweeps in one compiled program (`--sweep NAME=V1,V2,...`).

Every configuration of the grid runs with the same `--num-seeds` seeds, and all of them are
vmapped together on the device loop: the agent is built inside the vmapped program with its
swept hyperparameters as traced values, so one compile serves the whole grid and a
configuration's run equals the separate run with the same values and seed. Only options
that are plain numbers inside the program can be swept (the agent's float options);
structural ones (network sizes, env counts, rollout lengths) change the program's shapes
and are refused with the list of those that can be.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import itertools
import typing
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class Sweep(NamedTuple):
    """A parsed sweep.

    Attributes:
      names: the swept option names, in the order given.
      grid: the configurations, each a tuple of values in `names`' order.
    """

    names: tuple[str, ...]
    grid: tuple[tuple[float, ...], ...]

    def values(self, seeds_per_config: int) -> np.ndarray:
        """`[configs * seeds, H]`: each vmapped run's values (configuration-major)."""
        return np.repeat(np.asarray(self.grid, np.float32), seeds_per_config, axis=0)

    def label(self, index: int) -> str:
        return ", ".join(f"{n}={v:g}" for n, v in zip(self.names, self.grid[index], strict=True))

    @classmethod
    def from_points(cls, names: tuple[str, ...], points: Any, config: Any) -> Sweep:
        """A sweep of arbitrary configurations (a tuner's batch of trials), not a grid: each
        point is a tuple of values in `names`' order, checked as `parse_sweep` checks its."""
        return parse_sweep(points_entries(tuple(names), points), config)

    def entries(self) -> tuple[str, ...]:
        """The `--sweep` entries (`RunConfig.sweep`) that `parse_sweep` reads back as this
        sweep: one zipped entry, `NAME1:NAME2=A1:A2,B1:B2`."""
        return points_entries(self.names, self.grid)


def points_entries(names: tuple[str, ...], points: Any) -> tuple[str, ...]:
    """`--sweep` entries of the configurations `points` (not a grid): `NAME1:NAME2=A1:A2,...`,
    each value written so that it reads back exactly."""
    values = ",".join(":".join(repr(float(v)) for v in point) for point in points)
    return (f"{':'.join(names)}={values}",)


def sweepable(config: Any) -> list[str]:
    """The float options of an agent config (those a sweep can vary)."""
    hints = typing.get_type_hints(type(config))
    return [f.name for f in dataclasses.fields(config) if hints[f.name] is float]


def parse_sweep(entries: tuple[str, ...], config: Any) -> Sweep:
    """`("learning_rate=1e-4,3e-4", "gamma=0.9,0.99")` as a `Sweep` over `config`'s options,
    with a clear error for an option that cannot be swept or a value it refuses.

    An entry may also zip several options, `learning_rate:gamma=1e-3:0.99,3e-4:0.95`: those
    configurations as they are (a tuner's points), crossed with the other entries."""
    allowed = sweepable(config)
    names, axes = [], []
    for entry in entries:
        name, sep, values = str(entry).partition("=")
        if ":" in name:  # Zipped options: each value is one point of them all.
            zipped = tuple(n.strip().replace("-", "_") for n in name.split(":"))
            for n in zipped:
                _check_name(n, allowed, names, config)
                names.append(n)
            try:
                points = [tuple(float(v) for v in p.split(":")) for p in values.split(",")]
            except ValueError:
                raise ValueError(f"--sweep {entry!r}: values must be numbers.") from None
            if not values.strip() or any(len(p) != len(zipped) for p in points):
                raise ValueError(
                    f"--sweep {entry!r}: write NAME1:NAME2=A1:A2,B1:B2,... (one value of "
                    "each option per configuration)."
                )
            axes.append(tuple(points))
            continue
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(
                f"--sweep {entry!r}: write NAME=V1,V2,... (e.g. learning_rate=1e-4,3e-4)."
            )
        _check_name(name, allowed, names, config)
        try:
            axes.append(tuple((float(v),) for v in values.split(",")))
        except ValueError:
            raise ValueError(f"--sweep {entry!r}: values must be numbers.") from None
        names.append(name)
    grid = tuple(tuple(v for part in parts for v in part) for parts in itertools.product(*axes))
    for point in grid:  # The agent config's own checks, on every configuration.
        dataclasses.replace(config, **dict(zip(names, point, strict=True)))
    return Sweep(tuple(names), grid)


def _check_name(name: str, allowed: list[str], names: list[str], config: Any) -> None:
    """Refuses an option that cannot be swept, or one given twice."""
    if name not in allowed:
        what = "not an option of" if not hasattr(config, name) else "a structural option of"
        raise ValueError(
            f"--sweep {name}: {what} {type(config).__name__}, so it cannot be swept in one "
            f"program. Options that can: {', '.join(allowed)}. Sweep structural options "
            "(network sizes, env counts, ...) as separate runs."
        )
    if name in names:
        raise ValueError(f"--sweep {name} is given twice; list all its values in one.")


def with_values(config: Any, names: tuple[str, ...], row: Any) -> Any:
    """`config` with option `names[i]` set to `row[i]` (traced values inside the vmapped
    program; the values were checked by `parse_sweep`)."""
    swept = copy.copy(config)
    for i, name in enumerate(names):
        object.__setattr__(swept, name, row[i])
    return swept


def write_sweep(
    run_dir: Path,
    sweep: Sweep,
    seeds: list[int],
    final: np.ndarray,
    evaluated: np.ndarray,
) -> list[dict[str, Any]]:
    """Writes `RUN_DIR/sweep.csv` (one row per configuration and seed) and returns the
    configurations ranked by mean final return (best first)."""
    n = len(seeds)
    with open(run_dir / "sweep.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*sweep.names, "seed", "final_return", "eval_return"])
        for g, point in enumerate(sweep.grid):
            for i, seed in enumerate(seeds):
                run = g * n + i
                ev = float(evaluated[run]) if evaluated.size else float("nan")
                writer.writerow([*point, seed, float(final[run]), ev])
    ranked = []
    for g, point in enumerate(sweep.grid):
        runs = slice(g * n, (g + 1) * n)
        ranked.append(
            {
                **dict(zip(sweep.names, point, strict=True)),
                "final_return_mean": float(np.nanmean(final[runs])),
                "eval_return_mean": float(np.mean(evaluated[runs])) if evaluated.size else None,
            }
        )
    ranked.sort(key=lambda r: -np.nan_to_num(r["final_return_mean"], nan=-np.inf))
    return ranked
