"""The small matmuls of an RL update on this machine's XLA backend, each run many times in one
jitted loop: a dense layer's kernel gradient as XLA lowers it (the input's rows contracted, a
transposed operand), the same product through `networks.torsos.dense_dot_general`'s
transposed copy, and the product of an operand already stored transposed.

    python benchmarks/cpu_matmuls.py --rows 256        # SAC's batch at Rejax's settings
    python benchmarks/cpu_matmuls.py --rows 100        # PPO's minibatch there

Each figure is microseconds per call, three timings each; a little of it is the loop's own
bookkeeping (an add that keeps XLA from hoisting the product out of the loop).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp


def per_call(f, *args, calls: int = 2000) -> float:
    """Microseconds per call of `f(*args, acc)` inside one jitted `fori_loop`."""

    @jax.jit
    def run(*args):
        def body(_, acc):
            return acc + f(*args, acc)

        return jax.lax.fori_loop(0, calls, body, jnp.zeros((64, 64)))

    run(*args).block_until_ready()
    start = time.perf_counter()
    run(*args).block_until_ready()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=256, help="rows of the layer's input")
    rows = parser.parse_args(argv).rows
    x, g = jnp.ones((rows, 64)), jnp.ones((rows, 64))
    stored = jnp.ones((64, rows))
    cases = {
        "kernel gradient, as XLA lowers it": lambda x, g, a: (x + a[0, 0] * 1e-9).T @ g,
        "kernel gradient, transposed copy": lambda x, g, a: (
            jax.lax.optimization_barrier((x + a[0, 0] * 1e-9).T) @ g
        ),
        "operand stored transposed": lambda s, g, a: (s + a[0, 0] * 1e-9) @ g,
    }
    print(f"backend {jax.default_backend()}, {rows} rows x 64 features, us per call")
    for name, f in cases.items():
        args = (stored, g) if name.startswith("operand") else (x, g)
        print(f"  {name}: {[round(per_call(f, *args), 2) for _ in range(3)]}")


if __name__ == "__main__":
    main(sys.argv[1:])
