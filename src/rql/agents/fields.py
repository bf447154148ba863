"""The allowed values of agent config fields, declared beside each field, checked before anything runs.

A field declares its range in its ``dataclasses.field`` metadata, right above its docstring (tyro still
reads the docstring and the default for ``--help``)::

    horizon: int = dataclasses.field(default=1, metadata=positive_int())
    \"\"\"Action chunk length h.\"\"\"
    discount: float = dataclasses.field(default=0.99, metadata=in_range(0, 1, lo_open=True))
    \"\"\"Discount gamma per environment step.\"\"\"

:func:`check_config` walks ``dataclasses.fields(config)`` and raises :class:`FieldRangeError` (an
:class:`~rql.errors.RQLError`) with one line naming the first field out of its range, e.g. ``agent field 'horizon' = 0 is out of range: it
must be an integer >= 1``. ``rql.agents.build_config`` calls it (so the command line, sweeps and the
Python API all pass through it), ``rql train`` calls it on the parsed config before it reads data, and
``rql sweep`` builds every cell's config when it plans, before any trial runs.

A subclass that redeclares a field (to change its default) redeclares its range too: dataclasses keep
the subclass's ``Field``, metadata included. Fields with no declaration are not checked (booleans,
strings and ``Literal`` choices need none: tyro already checks those on the command line).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping

from rql.errors import RQLError

KEY = "rql_range"
"""The metadata key under which a field's :class:`Range` is stored."""


class FieldRangeError(RQLError):
    """A field's value outside its declared range (an :class:`RQLError`: one line, exit status 2)."""


@dataclasses.dataclass(frozen=True)
class Range:
    """A number between ``lo`` and ``hi`` (each bound closed unless ``lo_open``/``hi_open``; None: unbounded).

    ``integer``: an integer (not a bool, not a float). ``optional``: None is allowed too. ``each``: the value
    is a tuple (or list) of at least ``min_len`` such numbers, each checked. ``finite``: infinities are
    refused (NaN always is). ``alias``: other field names that set this one (named in the error)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    optional: bool = False
    each: bool = False
    min_len: int = 0
    finite: bool = True
    alias: tuple[str, ...] = ()

    @property
    def meta(self) -> Mapping[str, Any]:
        """This range as a field's ``metadata``."""
        return {KEY: self}

    def _bounds(self) -> str:
        lo, hi = _num(self.lo), _num(self.hi)
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {hi}"
        return ""

    def _number(self) -> str:
        """What one number must be, e.g. 'an integer >= 1', 'in (0, 1]', 'a finite number'."""
        bounds = self._bounds()
        if self.integer:
            return f"an integer {bounds}".strip()
        if not bounds:
            return "a finite number" if self.finite else "a number (not NaN)"
        return f"a number {bounds}" if (self.optional or self.each) else bounds

    def describe(self) -> str:
        """The allowed values, as the end of 'it must be ...'."""
        text = self._number()
        if self.each:
            text = f"a {'non-empty ' if self.min_len == 1 else ''}tuple whose entries are each {text}"
            if self.min_len > 1:
                text += f", at least {self.min_len} of them"
        return f"None or {text}" if self.optional else text

    def _number_ok(self, v) -> bool | None:
        """True: in range; False: a number out of range; None: not a number of the right kind."""
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return None
        if self.integer and not isinstance(v, numbers.Integral):
            return None
        x = float(v)
        if math.isnan(x) or (self.finite and math.isinf(x)):
            return False
        if self.lo is not None and (x < self.lo or (self.lo_open and x == self.lo)):
            return False
        if self.hi is not None and (x > self.hi or (self.hi_open and x == self.hi)):
            return False
        return True

    def problem(self, value) -> str | None:
        """None when ``value`` is allowed, else why not: 'is out of range' or 'is invalid'."""
        if value is None:
            return None if self.optional else "is invalid"
        if self.each:
            if not isinstance(value, (tuple, list)):
                return "is invalid"
            if len(value) < self.min_len:
                return "is out of range"
            oks = [self._number_ok(v) for v in value]
            if any(ok is None for ok in oks):
                return "is invalid"
            return None if all(oks) else "is out of range"
        ok = self._number_ok(value)
        if ok is None:
            return "is invalid"
        return None if ok else "is out of range"


def _num(x) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def show(value) -> str:
    """A value as the error line writes it: ``0``, ``1.5``, ``(256, 0)``, ``'abc'``."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, (tuple, list)):
        inner = ", ".join(show(v) for v in value)
        return f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


# ----------------------------------------------------------------------------- declarations


def in_range(lo=None, hi=None, *, lo_open: bool = False, hi_open: bool = False, integer: bool = False,
             optional: bool = False, finite: bool = True, alias: tuple[str, ...] = ()) -> Mapping[str, Any]:
    """Metadata of a number in [lo, hi] (a bound is open with ``lo_open``/``hi_open``; None: none)."""
    return Range(lo, hi, lo_open, hi_open, integer, optional, finite=finite, alias=tuple(alias)).meta


def positive_int() -> Mapping[str, Any]:
    """An integer >= 1 (sizes, counts, steps)."""
    return Range(lo=1, integer=True).meta


def at_least_int(lo: int) -> Mapping[str, Any]:
    """An integer >= ``lo``."""
    return Range(lo=lo, integer=True).meta


def positive(*, finite: bool = True) -> Mapping[str, Any]:
    """A number > 0 (learning rates, temperatures, clips)."""
    return Range(lo=0, lo_open=True, finite=finite).meta


def non_negative() -> Mapping[str, Any]:
    """A number >= 0 (loss weights, noise scales, pessimism)."""
    return Range(lo=0).meta


def unit_interval() -> Mapping[str, Any]:
    """A number in [0, 1] (rates, decays, probabilities)."""
    return Range(0, 1).meta


def open_unit_interval(*, optional: bool = False, alias: tuple[str, ...] = ()) -> Mapping[str, Any]:
    """A number in (0, 1) (expectiles)."""
    return Range(0, 1, lo_open=True, hi_open=True, optional=optional, alias=tuple(alias)).meta


def any_number(*, optional: bool = False, finite: bool = True) -> Mapping[str, Any]:
    """Any number, NaN refused (and infinities unless ``finite=False``): a field checked for its kind only."""
    return Range(optional=optional, finite=finite).meta


def layer_sizes(min_len: int = 0) -> Mapping[str, Any]:
    """A tuple of hidden layer sizes, each an integer >= 1 (at least ``min_len`` of them)."""
    return Range(lo=1, integer=True, each=True, min_len=min_len).meta


# ----------------------------------------------------------------------------- checking


def declared(cls_or_config) -> dict[str, Range]:
    """``{field name: Range}`` of the fields of a config (class or instance) that declare one."""
    return {f.name: f.metadata[KEY] for f in dataclasses.fields(cls_or_config) if KEY in f.metadata}


def field_error(name: str, spec: Range, value) -> str | None:
    """The one-line error for ``name = value`` under ``spec``, or None when the value is allowed."""
    problem = spec.problem(value)
    if problem is None:
        return None
    also = "".join(f" (or its alias '{a}')" for a in spec.alias)
    return f"agent field '{name}'{also} = {show(value)} {problem}: it must be {spec.describe()}"


def check_config(config) -> None:
    """Raise :class:`RQLError` (one line) for the first field of ``config`` outside its declared range."""
    for name, spec in declared(config).items():
        err = field_error(name, spec, getattr(config, name))
        if err is not None:
            raise FieldRangeError(err)


__all__ = ["KEY", "FieldRangeError", "Range", "any_number", "at_least_int", "check_config", "declared", "field_error", "in_range",
           "layer_sizes", "non_negative", "open_unit_interval", "positive", "positive_int", "show",
           "unit_interval"]
