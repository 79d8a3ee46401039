"""The engine that trains an agent: the device and host loops (`anakin`, `sebulba`, with the
learner step they share in `loop`), the trainer that runs a run's intervals through its
features (`trainer`, `features`), checkpoints and restore (`checkpoint`, `restore`), the run
directory and summary, evaluation, saved policies, sweeps and multi-host set-up.

The modules beside this package in `purerl.experiments` are entry points (the command line,
`plot`, `enjoy`, `check_envs`, the benchmarks) that call it.
"""
