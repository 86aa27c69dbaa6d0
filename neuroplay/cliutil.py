"""Build argparse flags from a config dataclass: one flag per field, its docstring as the help.

Kept tiny on purpose (cleanrl's `Args` style without a dependency): `--run-dir` for `run_dir`,
`--flag/--no-flag` for booleans, `nargs='+'` for lists. Defaults are resolved in `build`, so a preset
can supply its own defaults for the flags the user did not give.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
from functools import cache
from typing import Any


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a dataclass."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = nxt.value.value.strip()
    return docs


def add_dataclass_args(
    parser: argparse.ArgumentParser, cls: type, positional: tuple[str, ...] = (), skip: tuple[str, ...] = ()
) -> None:
    """Add one argument per field of `cls` (defaults stay None so `build` can tell what was given)."""
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        help_ = f"{docs.get(f.name, '')} (default: {default})".replace("%", "%%")  # argparse formats help with %
        t = str(f.type)
        kw: dict[str, Any] = {"help": help_, "default": None}
        if f.name in positional:
            parser.add_argument(f.name, nargs="+" if t.startswith("list") else None, **{"help": help_})
            continue
        flag = "--" + f.name.replace("_", "-")
        if "choices" in f.metadata:  # e.g. --preset: the choices listed from the presets themselves
            parser.add_argument(flag, choices=list(f.metadata["choices"]), **kw)
        elif t == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif t.startswith("list"):
            parser.add_argument(flag, nargs="+", type=_scalar(t[5:-1]), metavar="X", **kw)
        elif t.startswith("Literal"):
            choices = ast.literal_eval("[" + t[len("Literal[") : -1] + "]")
            parser.add_argument(flag, choices=choices, **kw)
        else:
            parser.add_argument(flag, type=_scalar(t), metavar=f.name.upper(), **kw)


def _scalar(t: str) -> Any:
    return {"int": int, "float": float}.get(t.strip(), str)


def build(cls: type, args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> Any:
    """Instantiate `cls` from parsed args; unset flags take `defaults`, then the dataclass default."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is None and defaults and f.name in defaults:
            v = defaults[f.name]
        if v is not None:
            values[f.name] = v
    return cls(**values)
