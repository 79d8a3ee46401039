"""Train R2D2: `python -m purerl.experiments.r2d2 --env ENV` (a JAX env runs on the device loop, a
`gymnasium:ID` or other Python env on the host loop); `--help` lists every option."""

from purerl.experiments.cli import agent_script, cli_main

run, main = agent_script("r2d2")

if __name__ == "__main__":
    cli_main(main)
