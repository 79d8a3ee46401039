"""Optimizers from the config: any optax optimizer by name, a learning-rate schedule and
gradient clipping, written as short strings that read the same on the command line and in
YAML:

    --optimizer "adamw(weight_decay=1e-4)" --lr-schedule "warmup_cosine(warmup_steps=1000)"

An agent calls `make_optimizer` and never builds an optax chain by hand, and takes each
optimizer step with `apply_gradients`.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

import optax
from purerl.core import maybe_pmean

# optax's optimizer aliases that take a learning rate first and update from gradients alone.
OPTIMIZERS = (
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "amsgrad",
    "fromage",
    "lamb",
    "lars",
    "lion",
    "nadam",
    "nadamw",
    "novograd",
    "optimistic_gradient_descent",
    "radam",
    "rmsprop",
    "sgd",
    "sm3",
    "yogi",
)
SCHEDULES = ("constant", "linear", "cosine", "warmup_cosine", "exponential")


def parse_call(spec: str, what: str) -> tuple[str, dict[str, Any]]:
    """`"name"` or `"name(key=value, ...)"` (Python literals) -> `(name, kwargs)`."""
    text = str(spec).strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(
            f"Cannot read the {what} {spec!r}; write a name or name(key=value, ...)."
        ) from None
    if isinstance(node, ast.Name):
        return node.id, {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
        kwargs = {}
        for kw in node.keywords:
            try:
                kwargs[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                raise ValueError(
                    f"The {what} {spec!r}: argument {kw.arg} must be a literal value."
                ) from None
        return node.func.id, kwargs
    raise ValueError(
        f"Cannot read the {what} {spec!r}; write a name or name(key=value, ...) "
        "with keyword arguments only."
    )


def _check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], what: str, fixed: set) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [name for name in params if name not in fixed]
    for name in kwargs:
        if name not in allowed:
            raise ValueError(f"The {what} takes no argument {name!r}; it takes {allowed}.")


def check_optimizer(spec: str) -> None:
    """Raises a clear error unless `spec` names an optax optimizer with valid arguments."""
    name, kwargs = parse_call(spec, "optimizer")
    name = name.replace("-", "_")
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}.")
    _check_kwargs(getattr(optax, name), kwargs, f"optimizer {name}", {"learning_rate"})


def check_schedule(spec: str) -> None:
    """Raises a clear error unless `spec` names a learning-rate schedule with valid arguments."""
    name, kwargs = parse_call(spec, "learning-rate schedule")
    name = name.replace("-", "_")
    if name not in SCHEDULES:
        raise ValueError(
            f"Unknown learning-rate schedule {name!r}; choose one of {list(SCHEDULES)}."
        )
    allowed = {
        "constant": set(),
        "linear": {"end_value"},
        "cosine": {"alpha", "exponent"},
        "warmup_cosine": {"warmup_steps", "init_value", "end_value", "exponent"},
        "exponential": {"decay_rate", "end_value"},
    }[name]
    for key in kwargs:
        if key not in allowed:
            raise ValueError(
                f"The learning-rate schedule {name} takes no argument {key!r}; "
                f"it takes {sorted(allowed)}."
            )


def make_schedule(
    spec: str, learning_rate: float, total_steps: int | None
) -> optax.ScalarOrSchedule:
    """A learning-rate schedule over `total_steps` gradient steps.

    - constant: `learning_rate` throughout.
    - linear(end_value=0): straight down to `end_value`.
    - cosine(alpha=0, exponent=1): cosine decay to `alpha * learning_rate`.
    - warmup_cosine(warmup_steps=total/20, init_value=0, end_value=0): linear warm-up to
      `learning_rate`, then cosine decay.
    - exponential(decay_rate=0.1): multiplied by `decay_rate` over the run.
    """
    check_schedule(spec)
    name, kwargs = parse_call(spec, "learning-rate schedule")
    name = name.replace("-", "_")
    if name == "constant":
        return learning_rate
    if not total_steps or total_steps < 1:
        raise ValueError(
            f"The learning-rate schedule {name!r} needs the run's number of gradient steps: "
            "pass the agent's make() its num_updates, or use lr_schedule='constant'."
        )
    if name == "linear":
        return optax.linear_schedule(learning_rate, kwargs.get("end_value", 0.0), total_steps)
    if name == "cosine":
        return optax.cosine_decay_schedule(learning_rate, total_steps, **kwargs)
    if name == "warmup_cosine":
        warmup = int(kwargs.pop("warmup_steps", max(1, total_steps // 20)))
        return optax.warmup_cosine_decay_schedule(
            kwargs.pop("init_value", 0.0),
            learning_rate,
            min(warmup, total_steps),
            total_steps,
            **kwargs,
        )
    return optax.exponential_decay(
        learning_rate,
        total_steps,
        kwargs.get("decay_rate", 0.1),
        end_value=kwargs.get("end_value"),
    )


def make_optimizer(
    spec: str,
    learning_rate: float,
    schedule: str = "constant",
    max_grad_norm: float = 0.0,
    total_steps: int | None = None,
) -> optax.GradientTransformation:
    """An optax optimizer from its config strings.

    Args:
      spec: the optimizer, e.g. "adam", "adam(eps=1e-5)", "adamw(weight_decay=1e-4)",
        "rmsprop(decay=0.95)", "sgd(momentum=0.9)", "lion".
      learning_rate: the step size (the schedule's peak).
      schedule: see `make_schedule`.
      max_grad_norm: clip gradients to this global norm first (0 or less: no clipping).
      total_steps: gradient steps in the run, for schedules that decay.
    """
    check_optimizer(spec)
    name, kwargs = parse_call(spec, "optimizer")
    lr = make_schedule(schedule, learning_rate, total_steps)
    tx = getattr(optax, name.replace("-", "_"))(lr, **kwargs)
    if max_grad_norm and max_grad_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    return tx


def apply_gradients(
    grads: Any,
    opt_state: optax.OptState,
    params: Any,
    tx: optax.GradientTransformation,
    axis_name: str | None = None,
) -> tuple[Any, optax.OptState]:
    """One optimizer step: `grads` averaged over the named device axis (when given, so the
    same step serves a single-device and a data-parallel learner), transformed by `tx` and
    applied to `params`. Returns `(params, opt_state)`."""
    grads = maybe_pmean(grads, axis_name)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
