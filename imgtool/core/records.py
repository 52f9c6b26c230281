"""Typed on-disk records: the one helper every JSON record imgtool writes and reads back
(entry.json, imgtool-model.json, facts and results records, the options metrics.json stores) is made of.

A record is a dataclass that mixes in `Record` and ends with `extra: dict[str, Any]`:

- `from_dict(data)` takes the known fields, each checked against its annotation
  (`int`, `float`, `str`, `bool`, `X | None`, `Literal[...]`, `list[X]`, `dict[str, X]`, a
  nested Record), and raises `BadRecord` (a ValueError) naming the first field of the wrong
  type; a missing key takes the field's default; keys this version does not know are kept
  in `extra`, in their order.
- `to_dict()` writes `extra` first, then the known fields in their declared order; a field
  declared with `known(omit=...)` is left out when `omit(value)` is true.
- `check()`, a hook, runs after `from_dict` for rules beyond the type (ranges, paths).

So a record written by another version of imgtool survives a read-modify-write, and
what is written is the same bytes a hand-written to_dict wrote. No dependency beyond the
standard library.

Layer: foundations (imports nothing of imgtool)."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

R = TypeVar("R", bound="Record")


class BadRecord(ValueError):
    """A record holds a value its reader cannot use: `str(err)` names the field."""


def short(value: Any) -> str:
    """A value as a message quotes it: its repr, at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_none(value: Any) -> bool:
    return value is None


def is_empty(value: Any) -> bool:
    return not value


def known(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    omit: Callable[[Any], bool] | None = None,
    expect: str | None = None,
) -> Any:
    """A known field: `omit(value)` true leaves it out of to_dict; `expect` ends the message
    of a value of the wrong type ("FIELD is VALUE, <expect>"; default "of the wrong type")."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"omit": omit, "expect": expect})


class Record:
    """The mix-in of a record dataclass whose last field is `extra: dict[str, Any]`."""

    record_error: ClassVar[type[BadRecord]] = BadRecord  # what from_dict raises
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            omit = f.metadata.get("omit")
            if omit is not None and omit(value):
                continue
            out[f.name] = _plain(value)
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "") -> R:
        """The record from a JSON object; `where` prefixes field names in messages
        ("backbone." for a nested record)."""
        if not isinstance(data, dict):
            raise cls.record_error(f"{where.rstrip('.') or 'the record'} is not a JSON object")
        hints = _hints(cls)
        values: dict[str, Any] = {}
        names = set()
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            names.add(f.name)
            if f.name in data:
                values[f.name] = _field(
                    hints[f.name], data[f.name], where + f.name, f.metadata.get("expect"), cls.record_error
                )
        record = cls(**values)
        record.extra = {k: v for k, v in data.items() if k not in names}
        record.check()
        return record

    def check(self) -> None:
        """Rules beyond the fields' types; raise `self.record_error` naming the field."""


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Mismatch(Exception):
    pass


def _field(hint: Any, value: Any, name: str, expect: str | None, error: type[BadRecord]) -> Any:
    try:
        return _fit(hint, value, name)
    except _Mismatch:
        raise error(f"{name} is {short(value)}, {expect or 'of the wrong type'}") from None


def _fit(hint: Any, value: Any, name: str) -> Any:
    """`value` if it is of type `hint` (nested records built), else _Mismatch."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return _fit(arg, value, name)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch
    if isinstance(hint, type) and issubclass(hint, Record):
        if not isinstance(value, dict):
            raise _Mismatch
        return hint.from_dict(value, name + ".")
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise _Mismatch
        return [_fit(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _Mismatch
        return {k: _fit(args[1], v, f"{name}.{k}") for k, v in value.items()} if args else value
    if _scalar(hint, value):
        return value
    raise _Mismatch


def _scalar(hint: Any, value: Any) -> bool:
    if hint is type(None):
        return value is None
    if hint is bool:
        return type(value) is bool
    if hint is int:
        return type(value) is int
    if hint is float:
        return type(value) in (int, float)
    if hint is str:
        return isinstance(value, str)
    raise TypeError(f"records: no rule for fields of type {hint!r}")
