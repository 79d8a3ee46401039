"""Checkpoints of a whole device-loop run (orbax-checkpoint), for resuming exactly.

A checkpoint holds the loop's entire device state (agent and optimiser states, replay
shards, env states, observations, RNG keys) and the host's position: the interval reached,
the per-update metrics so far and the rows of `metrics.csv`. Orbax writes each one to a
temporary folder and renames it when complete, so a run killed mid-write leaves the last
complete checkpoint readable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from purerl.replay import prioritized

CHECKPOINT_DIR = "checkpoints"


def shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """Each array's shape in `tree` (arrays or abstract arrays), by its path as plain names
    (`net/w`: dict keys, attribute names and indices alike), the form
    `Checkpoints.saved_shapes` gives too."""
    import jax

    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
    # Leaves without a shape (a Python number, say) are left out on both sides alike.
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
        for path, leaf in leaves
        if hasattr(leaf, "shape")
    }


def encode_history(history: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Per-interval metric arrays as JSON, keeping dtypes so they come back bit-identical."""
    return [
        {k: {"dtype": str(v.dtype), "value": v.tolist()} for k, v in h.items()} for h in history
    ]


def decode_history(encoded: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    return [{k: np.asarray(v["value"], dtype=v["dtype"]) for k, v in h.items()} for h in encoded]


class Checkpoints:
    """The checkpoints of one run directory, the last `keep` of them kept."""

    def __init__(self, run_dir: Path, keep: int):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = (Path(run_dir) / CHECKPOINT_DIR).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    @staticmethod
    def exists(run_dir: Path) -> bool:
        """Whether `run_dir` holds a complete checkpoint (without importing orbax)."""
        folder = Path(run_dir) / CHECKPOINT_DIR
        return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())

    def save(self, interval: int, runner: Any, host: dict[str, Any]) -> None:
        """Saves after logging interval `interval` (0-based); writes in the background."""
        ocp = self._ocp
        self.manager.save(
            interval,
            args=ocp.args.Composite(
                runner=ocp.args.StandardSave(runner), host=ocp.args.JsonSave(host)
            ),
        )

    def restore_latest(
        self, target: Any, explain: Callable[[], str] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """The newest checkpoint's `(runner, host)`; `target` gives structure and sharding.
        `explain()`, if given, may name a known cause of a mismatch for the error message."""
        ocp = self._ocp
        step = self.manager.latest_step()
        if step is None:
            raise ValueError(
                f"No checkpoint to resume from in {self.directory}: the run stopped before "
                "its first one. Start it again without --resume."
            )
        saved, wanted = self.saved_shapes(), shapes(target)
        differ = [p for p in wanted if p in (saved or {}) and saved[p] != wanted[p]]
        if differ:  # Refused from the metadata, before reading arrays of the wrong shape.
            path = differ[0]
            self._refuse(
                step, f"{path} has shape {saved[path]} there and {wanted[path]} here", explain
            )
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    runner=ocp.args.StandardRestore(target), host=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:
            # The cause (orbax's and TensorStore's, with its whole spec) stays in the chain
            # for PURERL_TRACEBACK=1; the message gives its first line, shortened.
            cause = str(e).strip().splitlines()[0] if str(e).strip() else ""
            cause = cause if len(cause) <= 160 else cause[:157] + "..."
            self._refuse(step, f"{type(e).__name__}: {cause}", explain, e)
        return restored["runner"], restored["host"]

    def _refuse(
        self,
        step: int,
        cause: str,
        explain: Callable[[], str] | None,
        error: Exception | None = None,
    ) -> None:
        known = explain() if explain is not None else ""
        made_by = self._made_by()
        advice = [known] if known else []
        if made_by:
            advice.append(
                f"This run was made by {made_by}; resume it with that version (CHANGELOG.md "
                "names what changed since), or start a new run from it with --init-from."
            )
        advice.append(
            "If a stop cut the newest checkpoint short while it was saved, move that directory "
            "out of checkpoints/ to resume from the one before it. Nothing has been changed."
        )
        raise ValueError(
            f"The checkpoint {self.directory / str(step)} does not match this run's config "
            f"or is corrupt ({cause}).\n" + "\n".join(advice)
        ) from error

    def _made_by(self) -> str:
        """The purerl that made this run where it was not this one ("" where it was, or
        where the run's config cannot say)."""
        from purerl import __version__

        try:
            saved = json.loads((self.directory.parent / "config.json").read_text())
        except (OSError, ValueError):
            return ""
        version = saved.get("purerl_version")
        if version == __version__:
            return ""
        return f"purerl {version}" if version else "a purerl older than this one"

    def saved_shapes(self) -> dict[str, tuple[int, ...]] | None:
        """The newest checkpoint's runner arrays' shapes (`shapes`), read from its metadata
        without reading any array; None without a checkpoint or readable metadata."""
        step = self.manager.latest_step()
        if step is None:
            return None
        try:
            from etils import epath  # Orbax's own path type (a dependency of orbax).

            handler = self._ocp.StandardCheckpointHandler()
            metadata = handler.metadata(epath.Path(self.directory / str(step) / "runner"))
        except Exception:  # Unreadable metadata: the restore itself will say what is wrong.
            return None
        return shapes(getattr(metadata, "tree", metadata))

    def close(self) -> None:
        if self.manager is not None:
            self.manager.wait_until_finished()
            self.manager.close()
            self.manager = None


def restore_runner(
    checkpoints: Checkpoints, runner: Any, explain: Callable[[], str] | None = None
) -> tuple[Any, dict[str, Any]]:
    """The newest checkpoint's `(runner, host)`, shaped as `runner`. Every older layout purerl
    still reads is recognised here from the checkpoint's metadata alone: a prioritised
    replay written with the sum-tree layout of earlier versions is restored into that layout
    and converted exactly (`replay.prioritized.from_legacy`)."""
    old = prioritized.legacy_target(runner)
    if old is not None:
        saved = checkpoints.saved_shapes()
        if saved is not None and saved != shapes(runner) and saved == shapes(old):
            restored, host = checkpoints.restore_latest(old, explain)
            return prioritized.from_legacy(restored, runner), host
    return checkpoints.restore_latest(runner, explain)
