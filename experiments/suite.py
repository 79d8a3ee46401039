"""`purerl suite NAME [NAME ...]`: train every agent on the environments it is meant for, as
ordinary run directories, and write the results page from them.

Each pair (agent, env) is one `purerl AGENT --env ENV --num-seeds N ...` process whose run
directory is `ROOT/SUITE/AGENT--ENV`; a pair whose run finished with the same command is
skipped, one that stopped part-way is continued from its checkpoint (or started again where
it had none), so a suite stopped at any point goes on where it was. A failed pair is
reported and the suite goes on to the next.

The page (`docs/results.md` by default) is made only from run directories: each pair's
`summary.json`, `returns.csv` and the command that made it are kept beside the page
(`docs/results/runs/`), so `purerl suite --check` can rebuild the page from them and say
where it differs, and the numbers on the page never come from anywhere else.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SUITE_FILE = "suite.json"  # In each run directory: the command that made it.
KEPT_FILES = ("summary.json", "returns.csv", SUITE_FILE)  # Kept beside the page.
ANCHORS = Path(__file__).with_name("anchors.yaml")


@dataclass(frozen=True)
class Pair:
    """One agent on one environment, with its budget and any flags beside the defaults."""

    agent: str
    env: str
    steps: int
    flags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.agent}--{self.env.replace(':', '_').replace('/', '_')}"

    @property
    def label(self) -> str:
        return " ".join((self.agent, *self.flags))


def _pairs(agents: Iterable[str], envs: Iterable[str], steps: int, *flags: str) -> list[Pair]:
    return [Pair(a, e, steps, tuple(flags)) for e in envs for a in agents]


CLASSIC_DISCRETE = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
MINATAR = ("Breakout-MinAtar", "SpaceInvaders-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar")
SUITE_PPO = ("--num-envs", "16", "--num-steps", "32")
SNAKE_6X6 = ("--env-params", "num_rows=6", "num_cols=6", "time_limit=200")
CARTPOLE_200 = ("--env-params", "episode_length=200")

# The budgets fit a 2-core CPU: the anchors' own budgets are named beside them on the page.
SUITES: dict[str, tuple[str, list[Pair]]] = {
    "classic": (
        "Classic control",
        _pairs(
            ("ppo", "a2c", "impala", "dqn", "c51", "qrdqn", "rainbow"), CLASSIC_DISCRETE, 500_000
        )
        + [Pair("ppo", "Pendulum-v1", 1_000_000)]
        + _pairs(("sac", "td3", "ddpg"), ("Pendulum-v1",), 20_000)
        + [Pair("ppo", "MountainCarContinuous-v0", 1_000_000)]
        + _pairs(("sac", "td3", "ddpg"), ("MountainCarContinuous-v0",), 50_000),
    ),
    "bsuite": (
        "bsuite (memory and credit assignment)",
        [
            Pair("ppo", "MemoryChain-bsuite", 500_000, ("--torso", "lstm")),
            Pair("r2d2", "MemoryChain-bsuite", 300_000),
            Pair("dqn", "MemoryChain-bsuite", 300_000),
        ]
        + _pairs(("ppo", "dqn"), ("Catch-bsuite",), 100_000),
    ),
    "minatar": ("MinAtar", _pairs(("ppo", "dqn"), MINATAR, 500_000)),
    "brax": (
        "Brax",
        [
            Pair("ppo", "brax:inverted_pendulum", 1_000_000),
            Pair("sac", "brax:inverted_pendulum", 50_000),
        ],
    ),
    # Each suite's smallest task, as in its learning test; PPO with a shorter rollout over
    # more envs (the suites' episodes are short or sparse), the DQN family at its defaults.
    "jax-suites": (
        "JAX environment suites",
        _pairs(("ppo",), ("pgx:tic_tac_toe",), 200_000, *SUITE_PPO)
        + _pairs(("dqn",), ("pgx:tic_tac_toe",), 200_000)
        + _pairs(("ppo",), ("navix:Navix-Empty-5x5-v0",), 100_000, *SUITE_PPO)
        + _pairs(("dqn",), ("navix:Navix-Empty-5x5-v0",), 100_000)
        + _pairs(("ppo",), ("xminigrid:MiniGrid-Empty-6x6",), 100_000, *SUITE_PPO)
        + _pairs(("dqn",), ("xminigrid:MiniGrid-Empty-6x6",), 100_000)
        + _pairs(("ppo",), ("jumanji:Snake-v1",), 200_000, *SUITE_PPO, *SNAKE_6X6)
        + _pairs(("dqn",), ("jumanji:Snake-v1",), 200_000, *SNAKE_6X6)
        + _pairs(("ppo",), ("craftax:Craftax-Classic-Symbolic-v1",), 100_000, *SUITE_PPO)
        + _pairs(("ppo",), ("playground:CartpoleBalance",), 300_000, *CARTPOLE_200)
        + _pairs(("sac",), ("playground:CartpoleBalance",), 30_000, *CARTPOLE_200),
    ),
}


# ---------------------------------------------------------------------------------------------
# Running the pairs.


def command(pair: Pair, seeds: int, eval_episodes: int, run_dir: Path) -> list[str]:
    """The `purerl` command line (after `purerl`) that trains a pair into `run_dir`."""
    return [
        pair.agent,
        "--env",
        pair.env,
        "--total-timesteps",
        str(pair.steps),
        "--num-seeds",
        str(seeds),
        "--eval-episodes",
        str(eval_episodes),
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--no-plot",
        *pair.flags,
    ]


def state_of(run_dir: Path, argv: list[str]) -> str:
    """ "done", "partial" (stopped with a checkpoint to go on from), "fresh" (nothing worth
    keeping) or "other" (a directory this suite did not make with this command)."""
    if not run_dir.exists():
        return "fresh"
    try:
        made_by = json.loads((run_dir / SUITE_FILE).read_text())["argv"]
    except (OSError, ValueError, KeyError):
        return "other"
    if made_by != argv:
        return "other"
    if (run_dir / "summary.json").is_file():
        return "done"
    checkpoints = run_dir / "checkpoints"
    return "partial" if checkpoints.is_dir() and any(checkpoints.iterdir()) else "fresh"


def machine() -> str:
    """The CPU (or accelerator) this process runs on, in words."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def run_pair(pair: Pair, run_dir: Path, argv: list[str], state: str) -> bool:
    """Trains (or continues) one pair in its own process; True where it finished."""
    if state == "fresh" and run_dir.exists():
        shutil.rmtree(run_dir)  # A run of ours that stopped before its first checkpoint.
    if state == "partial":
        args = ["resume", str(run_dir), "--quiet"]
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {"argv": argv, "machine": machine(), "purerl": revision(), "started": _now()}
        (run_dir / SUITE_FILE).write_text(json.dumps(record, indent=1) + "\n")
        args = argv
    process = subprocess.run([sys.executable, "-m", "purerl.experiments", *args], check=False)
    return process.returncode == 0 and (run_dir / "summary.json").is_file()


def revision() -> str:
    """purerl's version, and its git commit where it runs from a checkout."""
    from purerl import __version__

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
        ).stdout.strip()
    except OSError:
        rev = ""
    return __version__ + (f" ({rev})" if rev else "")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def keep(run_dir: Path, kept: Path) -> None:
    """Copies what the page is made from (summary, per-seed returns, the command) beside it."""
    kept.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        shutil.copyfile(run_dir / name, kept / name)


# ---------------------------------------------------------------------------------------------
# The page.


def interval(values: Sequence[float]) -> tuple[float, float]:
    """`(mean, half-width)` of a 95% Student-t interval over seeds (0 for one seed)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), 0.0
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


def _figure(value: float) -> str:
    """A return to the precision it deserves: three significant figures, at least."""
    if not math.isfinite(value):
        return "—"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(values: Sequence[float]) -> str:
    mean, half = interval(values)
    if not math.isfinite(mean):
        return "—"
    return f"{_figure(mean)} ± {_figure(half)}" if half > 0 else _figure(mean)


def load_anchors(path: Path = ANCHORS) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Published figures by `(agent, env)`, each naming its source."""
    import yaml

    if not path.is_file():
        return {}
    anchors: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in yaml.safe_load(path.read_text()) or []:
        anchors.setdefault((item["agent"], item["env"]), []).append(item)
    return anchors


def _steps(steps: float) -> str:
    return f"{steps:.0e}".replace("e+0", "e").replace("e+", "e")


def _anchor_cell(items: list[dict[str, Any]], notes: list[dict[str, Any]]) -> str:
    cells = []
    for item in items:
        notes.append(item)
        budget = f" at {_steps(item['steps'])}" if item.get("steps") else ""
        cells.append(f"{_figure(float(item['value']))}{budget} [{len(notes)}]")
    return "; ".join(cells) or ""


def page(kept_root: Path, page_path: Path, anchors: dict[Any, Any], draw: bool = True) -> str:
    """The results page's text, from the runs kept under `kept_root` (and, with `draw`, the
    plots it names, drawn beside it)."""
    from purerl.experiments.engine import plot

    meta = json.loads((kept_root / "suite.json").read_text())
    lines = [
        "# Results",
        "",
        "<!-- Written by `purerl suite`; `purerl suite --check` rebuilds it from the runs kept "
        "in docs/results/runs. Do not edit by hand. -->",
        "",
        "Every agent trained on the environments it is meant for, with each agent's own",
        "defaults (the options in the *agent* column are the only ones set), "
        f"{meta['seeds']} seeds per pair.",
        "*final* is the mean episode return of the last logging interval (the episodes that",
        f"ended in it), *eval* the mean of {meta['eval_episodes']} deterministic evaluation",
        "episodes per seed at the end; ± is the half-width of a 95% Student-t interval over",
        "seeds. *anchor* is a published figure for the same agent and environment, with its",
        "source below; a budget below the anchor's is a shorter run than the one it is",
        "set beside.",
        "",
        f"Made with `{meta['command']}` on {', '.join(meta['machines'])}; "
        f"purerl {', '.join(meta['purerl'])}, jax {meta['jax']}; {meta['date']}.",
        "",
    ]
    notes: list[dict[str, Any]] = []
    for suite in meta["suites"]:
        title, pairs = SUITES[suite]
        lines += [f"## {title}", ""]
        done = [p for p in pairs if (kept_root / suite / p.name / "summary.json").is_file()]
        missing = [p for p in pairs if p not in done]
        envs = list(dict.fromkeys(p.env for p in done))
        for env in envs:
            lines += [f"### {env}", ""]
            lines += [
                "| agent | steps | final | eval | anchor |",
                "| --- | --- | --- | --- | --- |",
            ]
            curves = []
            for pair in (p for p in done if p.env == env):
                kept = kept_root / suite / pair.name
                summary = json.loads((kept / "summary.json").read_text())
                anchor = _anchor_cell(anchors.get((pair.agent, env), []), notes)
                lines.append(
                    f"| `{pair.label}` | {_steps(summary['total_timesteps'])} | "
                    f"{_cell(summary['final_return'])} | {_cell(summary['eval_return'])} | "
                    f"{anchor} |"
                )
                curves.append((kept, pair.label))
            image = Path("results") / f"{env.replace(':', '_')}.png"
            if draw:
                plot.plot([k for k, _ in curves], page_path.parent / image, [b for _, b in curves])
            lines += ["", f"![{env}]({image.as_posix()})", ""]
        if missing:
            lines += [
                "Not run yet: " + ", ".join(f"`{p.agent}` on `{p.env}`" for p in missing) + ".",
                "",
            ]
    if notes:
        lines += ["## Sources of the anchors", ""]
        for i, item in enumerate(notes, 1):
            spread = f" {item['spread']}" if item.get("spread") else ""
            note = f" {item['note']}" if item.get("note") else ""
            lines.append(f"{i}. {item['agent']} on {item['env']}:{spread}. {item['source']}.{note}")
        lines.append("")
    return "\n".join(lines)


def _record_meta(
    kept_root: Path, suites: list[str], seeds: int, eval_episodes: int, scale: float
) -> None:
    """What the page says of how it was made: the command, machines, versions, date."""
    import jax

    records = [json.loads(p.read_text()) for p in kept_root.glob(f"*/*/{SUITE_FILE}")]
    path = kept_root / "suite.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    meta = {
        "command": f"purerl suite {' '.join(suites)} --seeds {seeds}",
        "suites": sorted(set(old.get("suites", [])) | set(suites), key=list(SUITES).index),
        "seeds": seeds,
        "eval_episodes": eval_episodes,
        "machines": sorted({r.get("machine", "an unrecorded machine") for r in records}),
        "purerl": sorted({r.get("purerl", "an unrecorded revision") for r in records}),
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
    }
    if len(meta["suites"]) > len(suites):
        meta["command"] = f"purerl suite {' '.join(meta['suites'])} --seeds {seeds}"
    if scale != 1:
        meta["command"] += f" --scale {scale:g}"
    path.write_text(json.dumps(meta, indent=1) + "\n")


def check(page_path: Path, kept_root: Path) -> list[str]:
    """The differences between the page and the page its kept runs make (none: it holds)."""
    if not page_path.is_file():
        return [f"{page_path} does not exist; run `purerl suite NAME` to make it."]
    expected = page(kept_root, page_path, load_anchors(), draw=False).splitlines()
    actual = page_path.read_text().splitlines()
    return list(difflib.unified_diff(actual, expected, str(page_path), "from the kept runs", n=0))


# ---------------------------------------------------------------------------------------------
# The command.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="purerl suite",
        description="Train every agent on the environments it is meant for (skipping pairs "
        "already done, continuing stopped ones), then write the results page from the runs.",
    )
    parser.add_argument(
        "suites", nargs="*", default=[], help=f"which suites ({', '.join(SUITES)}; default all)"
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds per pair (default 5)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="per seed (default 10)")
    parser.add_argument(
        "--root", default="runs/suite", help="where the run directories go (default runs/suite)"
    )
    parser.add_argument("--page", default="docs/results.md", help="the page to write")
    parser.add_argument("--only", default="", help="comma-separated agents to run (default all)")
    parser.add_argument("--envs", default="", help="comma-separated envs to run (default all)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every budget (a quick try: 0.01)"
    )
    parser.add_argument("--list", action="store_true", help="print the pairs and their state")
    parser.add_argument("--page-only", action="store_true", help="write the page, train nothing")
    parser.add_argument(
        "--check", action="store_true", help="compare the page with its kept runs and exit"
    )
    args = parser.parse_args(argv)
    page_path = Path(args.page)
    kept_root = page_path.parent / "results" / "runs"
    if args.check:
        diff = check(page_path, kept_root)
        print("\n".join(diff) if diff else f"{page_path} matches the runs in {kept_root}.")
        return 1 if diff else 0
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        close = difflib.get_close_matches(unknown[0], SUITES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        parser.error(f"no suite {unknown[0]!r}{hint}; the suites are {', '.join(SUITES)}")
    suites = args.suites or list(SUITES)
    only = {a for a in args.only.split(",") if a}
    only_envs = {e for e in args.envs.split(",") if e}
    failed = []
    for suite in suites:
        for pair in SUITES[suite][1]:
            if (only and pair.agent not in only) or (only_envs and pair.env not in only_envs):
                continue
            pair = Pair(pair.agent, pair.env, max(1, round(pair.steps * args.scale)), pair.flags)
            run_dir = Path(args.root) / suite / pair.name
            argv_pair = command(pair, args.seeds, args.eval_episodes, run_dir)
            state = state_of(run_dir, argv_pair)
            if args.list:
                print(f"{suite:8} {pair.label:28} {pair.env:28} {_steps(pair.steps):>5}  {state}")
                continue
            if args.page_only:
                state = "done" if state == "done" else "skip"
            if state == "other":
                print(
                    f"{run_dir} holds a run this suite did not make with this command; move "
                    "it away or pass --root elsewhere. Skipping it.",
                    flush=True,
                )
                continue
            if state == "fresh" or state == "partial":
                verb = "continuing" if state == "partial" else "training"
                print(f"[{suite}] {verb} {pair.label} on {pair.env} ({run_dir})", flush=True)
                if not run_pair(pair, run_dir, argv_pair, state):
                    failed.append(f"{pair.label} on {pair.env}")
                    print(f"[{suite}] {pair.label} on {pair.env} failed; going on", flush=True)
                    continue
            if (run_dir / "summary.json").is_file():
                keep(run_dir, kept_root / suite / pair.name)
    if args.list:
        return 0
    _record_meta(kept_root, suites, args.seeds, args.eval_episodes, args.scale)
    page_path.write_text(page(kept_root, page_path, load_anchors()))
    print(f"wrote {page_path}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
