"""Values for config fields from a sweep file, a command line or Python (``rql.train(agent_config=...)``):
split, parsed, coerced to a field's type (with our own one-line messages), and written into labels."""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any


def split_top(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: ``1,[16,16],"a,b"`` -> three parts."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, [16,16], "s"), else the string."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if t.lower() in ("none", "null"):
        return None
    try:
        return json.loads(t)
    except ValueError:
        return t[1:-1] if len(t) >= 2 and t[0] == t[-1] == "'" else t


def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce_union(value: Any, args: tuple) -> Any:
    if value is None and type(None) in args:
        return None
    for a in args:
        if a is type(None):
            continue
        try:
            return coerce(value, a)
        except ValueError:
            pass
    raise ValueError(" or ".join(_type_name(a) for a in args))


def _coerce_scalar(value: Any, tp: type) -> Any:
    """``value`` as bool, int, float or str (the types of config fields); ValueError if it is not one."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
    elif tp is float:
        if not isinstance(value, bool):
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
    elif tp is str:
        if not (isinstance(value, (list, tuple, dict)) or value is None):
            return str(value)
    raise ValueError(_type_name(tp))


def _coerce_sequence(value: Any, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(value, str):
        value = [v for v in re.split(r"[x,\s]+", value.strip("[]() ")) if v]
    if not isinstance(value, (list, tuple)):
        raise ValueError(_type_name(tp))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(v, args[0]) for v in value)
    if origin is tuple and args:
        if len(args) != len(value):
            raise ValueError(_type_name(tp))
        return tuple(coerce(v, a) for v, a in zip(value, args))
    inner = args[0] if args else Any
    return [coerce(v, inner) for v in value]


def coerce(value: Any, tp: Any) -> Any:
    """``value`` (from a file or the command line) as the dataclass field type ``tp``; ValueError if it is not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, args)
    if origin is typing.Literal:
        for a in args:
            if value == a or str(value) == str(a):
                return a
        raise ValueError("one of " + ", ".join(repr(a) for a in args))
    if tp in (bool, int, float, str):
        return _coerce_scalar(value, tp)
    if origin in (tuple, list):
        return _coerce_sequence(value, tp)
    return value


def _type_name(tp) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "none"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) in (tuple, list):
        return "a list such as [256,256]"
    return str(tp)


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "x".join(format_value(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", name) or "_"
