"""Before and after a change, side by side: runs the same agent command on an earlier
revision of purerl and on the installed one, alternating, and prints each run's closing
line (final returns, steps/s). Speed on a shared machine drifts; alternating rounds keep
the two sides under the same load.

    python -m purerl.experiments.benchmark_revisions 5ed7d5d --rounds 3 -- \\
        ppo --env gymnasium:CartPole-v1 --total-timesteps 200000 --quiet --no-plot

The earlier revision is checked out (`git worktree`) into a temporary folder and imported
as `purerl` through `PYTHONPATH`, ahead of the installed one; both run
`python -m purerl.experiments.AGENT ...` (the form every revision has).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m purerl.experiments.benchmark_revisions", description=__doc__
    )
    parser.add_argument("revision", help="the earlier git revision (commit, tag, branch)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--repo", default=".", help="the purerl git checkout (default: here)")
    parser.epilog = "then -- AGENT [FLAGS ...]: the command both sides run"
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, command = parser.parse_args(argv[:cut]), argv[cut + 1 :]
    if not command or args.rounds < 1:
        parser.error("give --rounds of 1 or more and a command: -- AGENT [FLAGS ...]")
    agent, flags = command[0], command[1:]
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", args.repo, "worktree", "add", "--detach", str(tree), args.revision],
            check=True,
            capture_output=True,
        )
        try:
            (Path(tmp) / "path").mkdir()
            (Path(tmp) / "path" / "purerl").symlink_to(tree)
            sides = {args.revision: str(Path(tmp) / "path"), "installed": None}
            for i in range(args.rounds):
                for name, path in sides.items():
                    env = dict(os.environ)
                    if path is not None:
                        env["PYTHONPATH"] = os.pathsep.join(
                            filter(None, [path, env.get("PYTHONPATH")])
                        )
                    run_dir = Path(tmp) / f"run_{name}_{i}"
                    out = subprocess.run(
                        [sys.executable, "-m", f"purerl.experiments.{agent}", *flags]
                        + ["--run-dir", str(run_dir)],
                        env=env,
                        capture_output=True,
                        text=True,
                    )
                    lines = (out.stdout + out.stderr).strip().splitlines() or ["(no output)"]
                    print(f"round {i + 1}, {name}: {lines[-1]}", flush=True)
        finally:
            subprocess.run(
                ["git", "-C", args.repo, "worktree", "remove", "--force", str(tree)],
                capture_output=True,
            )


if __name__ == "__main__":
    main()
