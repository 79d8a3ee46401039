"""purerl's prioritised replay against flashbax's (pip `flashbax`): add, sample + priority
update, and the two in turn, alternating rounds in one run; prints microseconds per call for
each side and their ratio.

    python benchmarks/peers/flashbax_compare.py cartpole --rounds 3   # 4-float observations
    python benchmarks/peers/flashbax_compare.py atari --rounds 3      # 84x84x4 uint8 frames
    python benchmarks/peers/flashbax_compare.py cartpole --dry-run    # print the settings only

Run it with purerl's Python. Both sides are `experiments/benchmark_replay.py` (purerl's
replay benchmark, whose flashbax backend drives `fbx.make_prioritised_flat_buffer`), run in a
fresh process each: the purerl side with purerl's Python, the flashbax side with the flashbax
venv's Python (`--peer-python`, see README.md). Each cell is the median of the benchmark's
timed blocks of calls inside one compiled `lax.scan`, as purerl's device loop runs them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from common import REPO, check_peer_python, load_average, parser, versions, versions_of

PEER = "flashbax"
BENCHMARK = "experiments/benchmark_replay.py"  # Run from the repository's root.
# Capacities per transition kind: the Atari rows stop at 1e5 (2.8 GB of frames per buffer),
# which a 24 GB machine shared with other work holds.
CAPACITIES = {"cartpole": ("100000", "1000000"), "atari": ("10000", "100000")}
COLUMNS = ("add", "sample+update", "add+sample+update")


def benchmark_argv(case: str, backend: str) -> list[str]:
    return [
        BENCHMARK,
        *("--backend", backend, "--items", case, "--capacities", *CAPACITIES[case]),
        *("--batch-size", "256", "--add-size", "256", "--calls", "50", "--repeats", "5"),
    ]


def check_purerl_side(case: str) -> str:
    """Builds purerl's side of the benchmark at a small capacity (the `--dry-run` check)."""
    from purerl.experiments import benchmark_replay as bench

    shape, dtype = bench.ITEMS[case]
    state, _, _ = bench.purerl_fns(1024, 256, 256, bench.transition(shape, dtype, ()))
    return f"{type(state).__name__} of 1,024 {case} transitions"


def run_side(python: str, case: str, backend: str) -> dict[str, tuple[float, ...]]:
    """One run of the replay benchmark: microseconds per call of each column, by capacity."""
    cmd = [python, *benchmark_argv(case, backend)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise RuntimeError(f"{backend} side failed: {cmd}\n{out.stderr[-3000:]}")
    cells = {}
    for line in out.stdout.splitlines():
        words = line.replace(",", "").split()  # Capacities print as 100,000.
        if len(words) == 5 and words[0] == case:
            cells[words[1]] = tuple(float(w) for w in words[2:])
        elif len(words) > 2 and words[0] == case and words[2] == "failed:":
            cells[words[1]] = (float("nan"),) * len(COLUMNS)
    return cells


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.split("\n\n")[0], PEER, list(CAPACITIES)).parse_args(argv)
    print(f"purerl's prioritised replay vs flashbax's: {args.case} transitions\n")
    for backend in ("purerl", PEER):
        print(f"{backend}: python {' '.join(benchmark_argv(args.case, backend))}")
    if args.dry_run:
        print(f"purerl side builds: {check_purerl_side(args.case)}")
        return
    check_peer_python(args.peer_python, PEER)
    print(f"load average before: {load_average()}", flush=True)
    sides = {"purerl": sys.executable, PEER: args.peer_python}
    rounds: dict[str, list[dict[str, tuple[float, ...]]]] = {name: [] for name in sides}
    for i in range(args.rounds):
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        for name in order:
            rounds[name].append(run_side(sides[name], args.case, name))
            print(f"round {i + 1} {name}: {rounds[name][-1]}", flush=True)
    print(f"load average after: {load_average()}")
    print(
        "\n| capacity | operation | purerl us/call, each round | flashbax us/call, each round "
        "| purerl / flashbax (medians) |\n| --- | --- | --- | --- | --- |"
    )
    for capacity in CAPACITIES[args.case]:
        for c, column in enumerate(COLUMNS):
            ours = [r[capacity][c] for r in rounds["purerl"]]
            theirs = [r[capacity][c] for r in rounds[PEER]]
            ratio = statistics.median(ours) / statistics.median(theirs)
            print(
                f"| {int(capacity):,} | {column} | {' / '.join(f'{x:.1f}' for x in ours)} | "
                f"{' / '.join(f'{x:.1f}' for x in theirs)} | {ratio:.2f} |"
            )
    print(
        f"\nversions: purerl side {versions('purerl', 'jax')}; flashbax side "
        f"{versions_of(args.peer_python, 'flashbax', 'jax')}"
    )
    print("benchmark: batch 256, add 256 transitions per call, priority exponent 0.6")


if __name__ == "__main__":
    main(sys.argv[1:])
