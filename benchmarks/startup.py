"""Where a warm run's wall time goes: `purerl AGENT ...` with its compile cache already
filled, split into the phases of the process (imports, flags, building, compiling or loading
each program, the training intervals, the run's files, exit).

    python benchmarks/startup.py                       # purerl ppo --env CartPole-v1
    python benchmarks/startup.py --rounds 3 -- dqn --env CartPole-v1 --total-timesteps 50000

It makes a compile cache in a temporary folder and runs the command once to fill it (not
timed); then each round runs it twice more in fresh processes: once plainly, timed from
start to end (the wall time a user sees), and once watched: a thread samples the main
thread's stack every millisecond or so and charges the time to the innermost phase (the
engine's step) and kind of work (importing, tracing, lowering, compiling or reading the
cache, the rest) on it, and JAX's monitoring events name each program traced, lowered and
compiled or loaded. Watching costs a little itself, so the phases add up to a bit more than
the plain wall time. The figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_COMMAND = ("ppo", "--env", "CartPole-v1")
SAMPLE_SECONDS = 0.001
START, EXIT = "imports, command line", "Python start and exit"

# The engine's steps, by (file name ending, function): a sample is charged to the innermost
# one on the stack. Functions named `on_interval` and `close` are charged to their class.
PHASES = (
    ("experiments/command.py", "purerl_main", START),
    ("experiments/cli.py", "main", "flags (tyro, presets)"),
    ("experiments/cli.py", "run", "launch"),
    ("engine/build.py", "build_loop", "build (env, agent, loop)"),
    ("engine/trainer.py", "start", "run dir, config.json"),
    ("engine/trainer.py", "compile", "compile or load programs"),
    ("engine/trainer.py", "starting_point", "features"),
    ("engine/trainer.py", "features", "features"),
    ("engine/trainer.py", "intervals", "intervals: other"),
    ("engine/anakin.py", "step", "intervals: device step"),
    ("engine/sebulba.py", "step", "intervals: device step"),
    ("engine/trainer.py", "finish", "finish: other"),
    ("engine/trainer.py", "evaluator", "finish: final evaluation"),
    ("engine/policy.py", "save_policy", "finish: policy.msgpack"),
    ("engine/summary.py", "make_summary", "finish: summary.json"),
    ("engine/summary.py", "write_summary", "finish: summary.json"),
    ("engine/trainer.py", "draw", "finish: plot"),
)
KINDS = (  # The kind of work, by the innermost match: (file name ending, function).
    ("<frozen importlib._bootstrap>", "_find_and_load", "import"),
    ("jax/_src/compiler.py", "_cache_read", "cache read"),
    ("jax/_src/compiler.py", "_get_cache_key", "cache key"),
    ("jax/_src/compiler.py", "compile_or_get_cached", "compile"),
    ("jax/_src/interpreters/pxla.py", "lower_sharding_computation", "lower"),
    ("jax/_src/pjit.py", "_trace_for_jit", "trace"),
)
KIND_ORDER = ("import", "trace", "lower", "cache key", "cache read", "compile", "gc", "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument(
        "--against",
        metavar="REVISION",
        help="also measure this git revision of purerl, alternating with the working tree",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # A watched run: its JSON file.
    parser.add_argument(
        "command",
        nargs="*",
        help=f"the purerl command after `purerl` (default: {' '.join(DEFAULT_COMMAND)})",
    )
    args = parser.parse_args()
    command = list(args.command or DEFAULT_COMMAND)
    if args.child:
        watched(args.child, command)
        return
    with tempfile.TemporaryDirectory() as tmp:
        sides: dict[str, str | None] = {"working tree": None}
        if args.against:
            sides = {args.against: checkout(args.against, Path(tmp)), **sides}
        figures = measure(command, args.rounds, sides, Path(tmp))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"purerl {' '.join(command)}, compile cache warm: {args.rounds} round(s), load {load:.2f}"
    )
    for name, side in figures.items():
        print(f"\n## {name}\n")
        report(side)
    if len(figures) == 2:
        (a, before), (b, after) = figures.items()
        ratio = statistics.median(after["walls"]) / statistics.median(before["walls"])
        print(f"\nwhole process, {b} / {a}: {ratio:.2f}x (median wall times)")


def checkout(revision: str, tmp: Path) -> str:
    """A folder that holds `purerl` at `revision` (for PYTHONPATH, ahead of the installed)."""
    tree = tmp / "revision" / "purerl"
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return str(tree.parent)


def measure(
    command: list[str], rounds: int, sides: dict[str, str | None], tmp: Path
) -> dict[str, dict[str, Any]]:
    """Plain wall times and watched phases of `rounds` warm runs of `command` by each side
    (a folder to import purerl from, or None for the installed), alternating."""
    figures: dict[str, dict[str, Any]] = {n: {"walls": [], "watches": []} for n in sides}
    for i, (name, path) in enumerate(sides.items()):
        env = dict(os.environ)
        if path is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
        cache = tmp / f"cache{i}"  # Each side's own: their programs may differ.

        def argv(run_dir: str, cache: Path = cache) -> list[str]:
            return [*command, "--run-dir", str(tmp / run_dir), "--compile-cache-dir", str(cache)]

        figures[name].update(env=env, argv=argv)
        run([sys.executable, "-m", "purerl.experiments", *argv(f"warm-up{i}")], env)
    for r in range(rounds):
        for name in list(sides)[:: 1 if r % 2 == 0 else -1]:
            side, i = figures[name], list(sides).index(name)
            env, argv = side["env"], side["argv"]
            t = time.perf_counter()
            run([sys.executable, "-m", "purerl.experiments", *argv(f"side{i}-plain{r}")], env)
            side["walls"].append(time.perf_counter() - t)
            out = tmp / f"side{i}-watched{r}.json"
            child = [sys.executable, "-X", "importtime", __file__, "--child", str(out)]
            t = time.perf_counter()
            stderr = run([*child, "--", *argv(f"side{i}-watched{r}")], env)
            watch = json.loads(out.read_text())
            watch["exit"] = time.perf_counter() - t - watch.pop("main_seconds")
            watch["imports"] = imports_by_package(stderr)
            side["watches"].append(watch)
    for i, side in enumerate(figures.values()):
        side["files"] = sorted(p.name for p in (tmp / f"side{i}-plain0").iterdir())
        side["cached"] = len(list((tmp / f"cache{i}").iterdir()))
        del side["env"], side["argv"]
    return figures


def run(argv: list[str], env: dict[str, str]) -> str:
    """Runs `argv` from the repository's root; returns its stderr (exits if it fails)."""
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stderr


def imports_by_package(importtime: str) -> dict[str, float]:
    """Seconds spent importing each top-level package's own modules, from `-X importtime`."""
    seconds: dict[str, float] = defaultdict(float)
    for line in importtime.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and parts[0].split(":")[1].strip().isdigit():
            seconds[parts[2].strip().split(".")[0]] += int(parts[0].split(":")[1]) / 1e6
    return seconds


def watched(out: str, argv: list[str]) -> None:
    """Runs `purerl ARGV` in this process, sampling its stack and JAX's compile events; writes
    the phases, programs and timings as JSON to `out`."""
    start = time.perf_counter()
    sampler = Sampler(threading.get_ident())
    sampler.start()
    from purerl.experiments import command  # Its imports are charged too.

    programs: list[dict[str, Any]] = []
    run_command = getattr(command, "run_command", None)
    if run_command is None:  # A revision that imports JAX with the command's module.
        listen_to_jax(programs)
    else:

        def listened(argv: list[str]) -> None:  # JAX imported inside the command, as it is.
            listen_to_jax(programs)
            run_command(argv)

        command.run_command = listened
    sys.argv = ["purerl", *argv]
    command.purerl_main()  # As the `purerl` command runs it.
    sampler.stop()
    Path(out).write_text(
        json.dumps(
            {
                "main_seconds": time.perf_counter() - start,
                "phases": sampler.table,
                "programs": programs,
            }
        )
    )


def listen_to_jax(programs: list[dict[str, Any]]) -> None:
    """Appends to `programs` each program JAX compiles or loads from the cache from now on,
    with its trace, lowering and compile-or-load seconds."""
    from jax import monitoring

    # Each program's trace and lowering (with any jitted functions called inside it) come
    # just before its compile or load, one program at a time.
    pending = {"trace": 0.0, "lower": 0.0}
    hits = [0]
    stages = {
        "/jax/core/compile/jaxpr_trace_duration": "trace",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    }

    def on_duration(event: str, seconds: float, **kwargs: Any) -> None:
        if event in stages:
            pending[stages[event]] += seconds
        elif event == "/jax/core/compile/backend_compile_duration":
            program = {"name": kwargs.get("fun_name", "?"), **pending}
            program.update(compile=seconds, cache_hit=bool(hits[0]))
            pending.update(trace=0.0, lower=0.0)
            hits[0] = 0
            programs.append(program)

    def on_event(event: str, **kwargs: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            hits[0] = 1

    monitoring.register_event_duration_secs_listener(on_duration)
    monitoring.register_event_listener(on_event)


class Sampler(threading.Thread):
    """Samples one thread's stack every `SAMPLE_SECONDS`, charging the time since the last
    sample to (phase, kind) in `table` (seconds). Garbage collections are timed apart (the
    sampler cannot run while one holds the GIL) and charged to (phase, "gc")."""

    def __init__(self, ident: int):
        super().__init__(daemon=True)
        self.target, self.running = ident, True
        self.table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.collections: list[tuple[str, float]] = []  # (phase, seconds), appended by gc.
        self.collection_started, self.phase = 0.0, START
        gc.callbacks.append(self.on_gc)

    def on_gc(self, step: str, info: dict[str, int]) -> None:
        if step == "start":
            self.collection_started = time.perf_counter()
            return
        # Never sys._current_frames here: a collection it sets off would wait for its lock.
        if threading.get_ident() == self.target:
            phase = classify(sys._getframe())[0]
        else:  # Set off by another thread (the sampler, a plot's warm-up): the main's phase.
            phase = self.phase
        self.collections.append((phase, time.perf_counter() - self.collection_started))

    def run(self) -> None:
        last = time.perf_counter()
        while self.running:
            time.sleep(SAMPLE_SECONDS)
            frame = sys._current_frames().get(self.target)
            now = time.perf_counter()
            collected = 0.0
            while self.collections:
                phase, seconds = self.collections.pop()
                self.table[phase]["gc"] += seconds
                collected += seconds
            phase, kind = classify(frame)
            self.phase = phase
            self.table[phase][kind] += max(0.0, now - last - collected)
            last = now

    def stop(self) -> None:
        self.running = False
        self.join()
        gc.callbacks.remove(self.on_gc)


def classify(frame: Any) -> tuple[str, str]:
    """The innermost phase and kind of work on the stack whose innermost frame is `frame`."""
    phase = kind = None
    while frame is not None and phase is None:
        code = frame.f_code
        if kind is None:
            kind = next(
                (k for f, n, k in KINDS if code.co_name == n and code.co_filename.endswith(f)),
                None,
            )
        if code.co_name in ("on_interval", "close") and "self" in frame.f_locals:
            owner = type(frame.f_locals["self"]).__name__
            if frame.f_code.co_filename.endswith(("engine/features.py", "engine/logger.py")):
                phase = f"intervals: {owner}.{code.co_name}"
        phase = phase or next(
            (p for f, n, p in PHASES if code.co_name == n and code.co_filename.endswith(f)),
            None,
        )
        frame = frame.f_back
    return phase or START, kind or "other"


def rank(phase: str) -> float:
    """Where `phase` comes in the table: the process's order."""
    order = [START, *dict.fromkeys(p for _, _, p in PHASES), EXIT]
    if phase in order:
        return order.index(phase)
    return order.index("intervals: device step") + 0.5  # A feature's work in the intervals.


def report(figures: dict[str, Any]) -> None:
    """One side's tables: wall times, phases, programs and imports."""
    walls, watches = figures["walls"], figures["watches"]
    print(f"run dir: {', '.join(figures['files'])}; {figures['cached']} cache entries\n")
    print(f"whole process (plain): median {statistics.median(walls):.2f} s", end=" ")
    print(f"({', '.join(f'{w:.2f}' for w in walls)})\n")
    phases: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for watch in watches:
        for phase in {p for w in watches for p in w["phases"]}:
            for kind in KIND_ORDER:
                phases[phase][kind].append(watch["phases"].get(phase, {}).get(kind, 0.0))
        phases[EXIT]["other"].append(watch["exit"])
    names = sorted(phases, key=rank)
    print(f"| phase (watched, median s) | total | {' | '.join(KIND_ORDER)} |")
    print(f"| --- | ---: |{' ---: |' * len(KIND_ORDER)}")
    totals = defaultdict(float)
    for name in names:
        cells = [statistics.median(phases[name][k] or [0.0]) for k in KIND_ORDER]
        for k, v in zip(KIND_ORDER, cells, strict=True):
            totals[k] += v
        print(f"| {name} | {sum(cells):.2f} | {' | '.join(f'{c:.2f}' for c in cells)} |")
    cells = [totals[k] for k in KIND_ORDER]
    print(f"| all | {sum(cells):.2f} | {' | '.join(f'{c:.2f}' for c in cells)} |\n")
    print("| program (watched, first round) | trace s | lower s | compile or load s | cache |")
    print("| --- | ---: | ---: | ---: | --- |")
    for p in watches[0]["programs"]:
        hit = "read" if p["cache_hit"] else "-"
        print(f"| {p['name']} | {p['trace']:.3f} | {p['lower']:.3f} | {p['compile']:.3f} | {hit} |")
    count = len(watches[0]["programs"])
    hits = sum(p["cache_hit"] for p in watches[0]["programs"])
    print(f"\n{count} programs compiled or loaded, {hits} of them read from the cache\n")
    packages = {p for w in watches for p in w["imports"]}
    spent = {p: statistics.median(w["imports"].get(p, 0.0) for w in watches) for p in packages}
    heaviest = sorted(spent.items(), key=lambda item: -item[1])[:12]
    print(f"imports (watched, -X importtime, median s): {sum(spent.values()):.2f} in all;")
    print(", ".join(f"{p} {s:.2f}" for p, s in heaviest))


if __name__ == "__main__":
    main()
