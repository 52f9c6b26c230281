"""How an option is declared and read: `option()` makes a field of an options class
(imgtool/core/options.py) that carries its Spec - flags, help, kind, choices, range,
deprecation - as metadata; `options_of` reads them back without the dataclass machinery
(the CLI builds its click options from them at start-up), `check`/`check_value` refuse a
value outside its choices or range, `typed` builds an options class from an API call's
keywords, and `deprecation` says, once, why the deprecated options given change nothing
(`DEPRECATIONS`). Imports nothing heavy.

Layer: foundations (stdlib, errors)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from imgtool.core.errors import Param, Text, UsageError

T = TypeVar("T")

#: Why an option is deprecated, by reason: each deprecated option's field names one
#: (`deprecated=`), and `deprecation` says each reason once, whichever options were given.
DEPRECATIONS: dict[str, Text] = {
    "converged": "the last layer is fitted to convergence (full-batch L-BFGS), with L2 chosen by cross-validation ("
    + Param("l2")
    + " fixes it)",
}


# ---------------------------------------------------------------- the metadata of one option


class Range:
    """Bounds of a number (None: unbounded); an open bound excludes the value itself."""

    __slots__ = ("high", "high_open", "low", "low_open")

    def __init__(
        self, low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False
    ):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def refusal(self, name: str, value: float) -> str | None:
        """Why `value` is out of range, in the API's words; None when it is in."""
        low, high = self.low, self.high
        below = low is not None and (value <= low if self.low_open else value < low)
        above = high is not None and (value >= high if self.high_open else value > high)
        if not (below or above):
            return None
        if high is None:
            return f"{name} must be {'above' if self.low_open else 'at least'} {low:g} (got {value:g})"
        if low is None:
            return f"{name} must be {'below' if self.high_open else 'at most'} {high:g} (got {value:g})"
        excluded = [f"{b:g}" for b, is_open in ((low, self.low_open), (high, self.high_open)) if is_open]
        return f"{name} {value:g} is outside {low:g}..{high:g}" + (
            f" ({' and '.join(excluded)} excluded)" if excluded else ""
        )


class Spec:
    """One option: the command line's flags and help, and the values the API accepts.

    kind: "bool" (a flag), "int", "float", "str", "folder", "file" (paths), "size" (H,W),
    "pair" (LO,HI), "score" (0..1 or auto). deprecated: it is ignored, and why (a key of
    DEPRECATIONS); a deprecated option is hidden from --help."""

    __slots__ = ("choices", "deprecated", "flags", "help", "hidden", "kind", "metavar", "range", "show_default")

    def __init__(
        self,
        flags: tuple[str, ...],
        kind: str,
        help: str | None = None,
        metavar: str | None = None,
        choices: tuple[str, ...] | None = None,
        range: Range | None = None,
        deprecated: str | None = None,
        hidden: bool = False,
        show_default: bool = False,
    ):
        self.flags, self.kind, self.help, self.metavar = flags, kind, help, metavar
        self.choices, self.range, self.deprecated = choices, range, deprecated
        self.hidden, self.show_default = hidden or deprecated is not None, show_default


class _Option:
    """An option in its class's body, until the class is made a dataclass (`made`):
    then it is a `dataclasses.field` with the Spec as its metadata."""

    __slots__ = ("default", "spec")

    def __init__(self, default: Any, spec: Spec):
        self.default, self.spec = default, spec


def option(
    default: Any = None,
    *,
    flag: str | tuple[str, ...],
    kind: str,
    help: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    range: Range | None = None,
    deprecated: str | None = None,
    hidden: bool = False,
    show_default: bool = False,
) -> Any:
    """A field of an options class that is an option of a command (see the module docstring)."""
    flags = (flag,) if isinstance(flag, str) else flag
    return _Option(default, Spec(flags, kind, help, metavar, choices, range, deprecated, hidden, show_default))


_OPTIONS: dict[type, list[tuple[str, Spec, Any]]] = {}


def options_of(cls: type) -> list[tuple[str, Spec, Any]]:
    """(name, spec, default) of each option of the options class `cls`, in declaration
    order (base classes first, as dataclasses orders them), read from the class bodies:
    no dataclass machinery is needed (see `options_class`)."""
    if cls not in _OPTIONS:
        import inspect  # loaded already: click imports it

        out: dict[str, tuple[str, Spec, Any]] = {}
        for klass in reversed(cls.__mro__):
            for name in inspect.get_annotations(klass):
                value = _SPECS.get((klass, name)) or klass.__dict__.get(name)
                if isinstance(value, _Option):
                    out[name] = (name, value.spec, value.default)
        _OPTIONS[cls] = list(out.values())
    return _OPTIONS[cls]


_SPECS: dict[tuple[type, str], _Option] = {}  # the options of the classes made dataclasses already


class OptionsBase:
    """The base of the options classes: made dataclasses on first use (see `options_class`)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        made(cls)
        return super().__new__(cls)


def made(cls: type[T]) -> type[T]:
    """`cls` (an options class) made a dataclass, in place, its bases first, once: each
    option becomes a `dataclasses.field` (its Spec the metadata, "option")."""
    from dataclasses import dataclass, field

    for klass in reversed(cls.__mro__):
        if not issubclass(klass, OptionsBase) or klass is OptionsBase or "__dataclass_fields__" in klass.__dict__:
            continue
        for name, value in list(klass.__dict__.items()):
            if isinstance(value, _Option):
                _SPECS[(klass, name)] = value
                setattr(klass, name, field(default=value.default, metadata={"option": value.spec}))
        dataclass(klass)
    return cls


if TYPE_CHECKING:
    from dataclasses import dataclass as options_class
else:

    def options_class(cls: type[T]) -> type[T]:
        """@dataclass, applied on first use (an instance, `made`): the CLI reads every
        option at start-up to build its click options, and the dataclass machinery (and
        the dataclasses module, which nothing else imports at start-up) for ~45 fields
        would cost more than the whole click tree does."""
        return cls


def flag_of_parameter(*classes: type) -> dict[str, str]:
    """{parameter: the long flag that passes it} of every option of `classes` (the CLI
    names a parameter the library's message names by its flag)."""
    return {
        name: next(f for f in spec.flags if f.startswith("--")).split("/")[0]
        for cls in classes
        for name, spec, _ in options_of(cls)
    }


def choice_refusal(name: str, value: object, choices: tuple[str, ...]) -> str | None:
    if value in choices:
        return None
    return f"{name} {value!r}: choose {', '.join(choices[:-1])} or {choices[-1]}"


def check_value(cls: type, name: str, value: Any) -> None:
    """UsageError unless `value` is one that option `name` of `cls` takes (its choices, its
    range); None (not given) always is."""
    spec = next(s for n, s, _ in options_of(cls) if n == name)
    if value is None:
        return
    problem = None
    if spec.choices is not None:
        problem = choice_refusal(name, value, spec.choices)
    elif spec.range is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = f"{name} {value!r}: give a number"
        else:
            problem = spec.range.refusal(name, value)
    if problem is not None:
        raise UsageError(problem, parameter=name)


def typed(cls: type[T], caller: str, **values: Any) -> T:
    """`cls` from an API call's keywords: paths (`os.PathLike` or str) as Path for the
    folders and as str for the rest; a keyword that is no option is a TypeError, as
    Python says it for `caller`."""
    from dataclasses import fields

    known = {f.name: f.metadata.get("option") for f in fields(made(cls))}  # type: ignore[arg-type]  # made: a dataclass
    for name in values:
        if name not in known:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        spec = known[name]
        if isinstance(value, (str, os.PathLike)) and (spec is None or spec.kind == "folder"):
            value = Path(value)
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        out[name] = value
    return cls(**out)


def check(opts: Any) -> None:
    """UsageError naming the first option of `opts` (an instance of an options class of
    imgtool/core/options.py) whose value is not among its choices or in its range."""
    for name, _, _ in options_of(type(opts)):
        check_value(type(opts), name, getattr(opts, name))


def deprecated_names(cls: type) -> list[str]:
    """The options of `cls` that are deprecated (given, they change nothing)."""
    return [name for name, spec, _ in options_of(cls) if spec.deprecated is not None]


def deprecation(opts: Any) -> Text | None:
    """One line naming the deprecated options `opts` sets (they change nothing) and why,
    or None when it sets none."""
    given = [
        (name, spec.deprecated)
        for name, spec, default in options_of(type(opts))
        if spec.deprecated is not None and getattr(opts, name) != default
    ]
    if not given:
        return None
    line = Text()
    for i, (name, _) in enumerate(given):
        line = line + (", " if i else "") + Param(name)
    line = line + f" {'is' if len(given) == 1 else 'are'} deprecated and ignored: "
    for i, reason in enumerate(dict.fromkeys(r for _, r in given)):
        line = line + ("; " if i else "") + DEPRECATIONS[reason]
    return line
