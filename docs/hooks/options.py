"""MkDocs hook: option tables generated from the config dataclasses, so the docs' defaults are
the code's.

A page line

    <!-- options: purerl.agents.dqn:DQNConfig -->

becomes a table of every option of that config class (its fields and the fields it inherits):
the command-line flag, the default, whether `--sweep` can vary it, and the meaning taken
from the `Attributes:` section of the first class in its MRO that describes it. A line

    <!-- defaults: purerl.agents.dqn:C51Config purerl.agents.dqn:DQNConfig -->

becomes a table of the options whose defaults differ between the two classes, and
`<!-- run-options: ... -->` a table like the first without the sweep column. A class that
cannot be imported fails the build, so a renamed config breaks `mkdocs build --strict`.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import inspect
import re
import shutil
import tempfile
import typing
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

MARKER = re.compile(
    r"^<!-- (options|run-options|defaults): ([\w.:]+)(?: ([\w.:]+))? -->$", re.MULTILINE
)
ENTRY = re.compile(r"^(\w+)(?: \([^)]*\))?: (.*)$")


def _load(source: str) -> type:
    module, _, name = source.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise ValueError(f"{source} is not a dataclass")
    return obj


def _attributes(cls: type) -> dict[str, str]:
    """`name -> description` from the `Attributes:` section of `cls`'s own docstring."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    lines = doc.splitlines()
    out: dict[str, str] = {}
    try:
        start = lines.index("Attributes:") + 1
    except ValueError:
        return out
    name = None
    for line in lines[start:]:
        if not line.strip():
            if name is not None:
                name = None
                continue
            break
        indent = len(line) - len(line.lstrip())
        match = ENTRY.match(line.strip())
        if indent <= 2 and match:
            name = match.group(1)
            out[name] = match.group(2).strip()
        elif indent > 2 and name is not None:
            out[name] += " " + line.strip()
        elif indent == 0:
            break
    return out


def _describe(cls: type, field: str) -> str:
    for klass in cls.__mro__:
        text = _attributes(klass).get(field)
        if text:
            return text
    return ""


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"`{value}`"
    if isinstance(value, tuple):
        return "`" + (" ".join(map(str, value)) if value else "()") + "`"
    if isinstance(value, float) and value and (abs(value) >= 1e5 or abs(value) < 1e-3):
        mantissa, exponent = f"{value:e}".split("e")
        return f"`{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}`"
    if isinstance(value, int) and abs(value) >= 1e4:
        return f"`{value:,}`"
    return f"`{value}`"


def _flag(name: str, value: Any) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return f"`{flag}` / `--no-{flag[2:]}`"
    return f"`{flag}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _fields(cls: type) -> list[dataclasses.Field]:
    """`cls`'s fields, grouped by the class that introduced each (the agent's own first,
    then the option sets it inherits), in declaration order within a group."""
    mro = [k for k in cls.__mro__ if dataclasses.is_dataclass(k)]

    def introduced(field: dataclasses.Field) -> int:
        return max(i for i, k in enumerate(mro) if field.name in inspect.get_annotations(k))

    return sorted(dataclasses.fields(cls), key=introduced)


def options_table(cls: type, sweep: bool = True) -> str:
    """Every option of `cls`; with `sweep`, a column marking those `--sweep` can vary (an
    agent config's float options)."""
    hints = typing.get_type_hints(cls)
    rows = ["| flag | default |" + (" sweep |" if sweep else "") + " meaning |"]
    rows.append("| --- | --- |" + (" --- |" if sweep else "") + " --- |")
    for field in _fields(cls):
        value = _default(field)
        swept = (" yes |" if hints.get(field.name) is float else " |") if sweep else ""
        rows.append(
            f"| {_flag(field.name, value)} | {_show(value)} |{swept} "
            f"{_cell(_describe(cls, field.name))} |"
        )
    return "\n".join(rows)


def defaults_table(cls: type, base: type) -> str:
    base_defaults = {f.name: _default(f) for f in dataclasses.fields(base)}
    rows = [
        f"| flag | {cls.__name__} | {base.__name__} |",
        "| --- | --- | --- |",
    ]
    for field in dataclasses.fields(cls):
        value = _default(field)
        if field.name in base_defaults and base_defaults[field.name] != value:
            rows.append(
                f"| {_flag(field.name, value)} | {_show(value)} | "
                f"{_show(base_defaults[field.name])} |"
            )
    return "\n".join(rows)


@event_priority(100)  # Before mkdocstrings' on_config, which reads the handler's paths.
def on_config(config: Any, **kwargs: Any) -> Any:
    """Points the API reference's loader at the source as the package `purerl`.

    The repository root is the package (`pyproject.toml` maps it to `purerl`), but its folder
    is not named `purerl`, so griffe (mkdocstrings' loader) cannot find it by name on its
    search paths; it would fall back to importing and inspecting it, or, where `mkdocs` runs
    as a command, take the `purerl` console script beside it for the package. A folder with
    a link named `purerl` to the root lets it read the source as it is."""
    root = Path(config.config_file_path).resolve().parent
    folder = Path(tempfile.mkdtemp(prefix="purerl-docs-"))
    atexit.register(shutil.rmtree, folder, True)  # Removes the link, not what it points to.
    (folder / "purerl").symlink_to(root, target_is_directory=True)
    handlers = config.plugins["mkdocstrings"].config.handlers
    handlers.setdefault("python", {})["paths"] = [str(folder)]
    return config


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    def replace(match: re.Match) -> str:
        kind, source, other = match.groups()
        if kind == "options":
            return options_table(_load(source))
        if kind == "run-options":
            return options_table(_load(source), sweep=False)
        if other is None:
            raise ValueError(f"{match.group(0)}: name the class to compare with")
        return defaults_table(_load(source), _load(other))

    return MARKER.sub(replace, markdown)
