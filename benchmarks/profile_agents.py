"""What one update of every built-in agent costs at its defaults: `purerl benchmark --profile`
for each agent in turn (each in a fresh process), as one Markdown table.

    python benchmarks/profile_agents.py                      # every built-in agent
    python benchmarks/profile_agents.py --agents ppo sac     # some of them

Discrete-action agents run on gymnax's CartPole-v1, continuous ones on Pendulum-v1, each with
its own defaults (the preset its command line picks for that env), one seed, one device.
The kernel counts depend only on the program; the times on the machine and its load, so run
it with nothing else on the machine and compare figures from one run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

CONTINUOUS = {"sac", "td3", "ddpg"}
_TIME = re.compile(
    r"([\d.]+) ms per update, ([\d.]+) us per env step \(([\d,]+) env steps/s\), .*compile "
    r"([\d.]+)s"
)


def profile(agent: str) -> dict[str, str]:
    """One agent's `--profile` figures, parsed from what it prints."""
    env = "Pendulum-v1" if agent in CONTINUOUS else "CartPole-v1"
    cmd = [sys.executable, "-m", "purerl.experiments.benchmark", "--profile"]
    cmd += ["--agent", agent, "--env", env, "--num-devices", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return parse(out.stdout, agent, env)


def parse(text: str, agent: str, env: str) -> dict[str, str]:
    """The figures `purerl benchmark --profile` printed for `agent` on `env`."""
    program = re.search(r"(\d+) updates of ([\d,]+) env steps", text)
    kernels = re.search(r"([\d,.]+) per update", text)
    timing = _TIME.search(text)
    if not (program and kernels and timing):
        raise RuntimeError(f"Unexpected --profile output for {agent} on {env}:\n{text}")
    return {
        "agent": agent,
        "env": env,
        "env steps per update": program.group(2),
        "kernels per update": kernels.group(1),
        "ms per update": timing.group(1),
        "us per env step": timing.group(2),
        "env steps/s": timing.group(3),
        "compile s": timing.group(4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", help="agents to profile (default: every built-in)")
    args = parser.parse_args(argv)
    from purerl.agents import registry

    agents = args.agents or registry.built_in()
    rows = []
    for agent in agents:
        rows.append(profile(agent))
        print(f"{agent}: {rows[-1]['ms per update']} ms per update", file=sys.stderr, flush=True)
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("| " + " | ".join("---" for _ in columns) + " |")
    for row in rows:
        print("| " + " | ".join(row[c] for c in columns) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
