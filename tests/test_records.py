"""records.py: the one helper every on-disk JSON record is made of (known fields checked
by their annotations, missing keys defaulted, unknown keys kept and written back first)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pytest

from imgtool.core.records import BadRecord, Record, is_empty, is_none, known


class Damaged(BadRecord):
    pass


@dataclass
class Inner(Record):
    record_error: ClassVar[type[BadRecord]] = Damaged

    size: list[int] = known(factory=list, expect="not [height, width]")
    kind: Literal["a", "b"] = "a"
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.size and len(self.size) != 2:
            raise Damaged(f"size is {self.size!r}, not [height, width]")


@dataclass
class Outer(Record):
    name: str = ""
    count: int = 0
    ratio: float = 1.0
    on: bool = False
    note: str | None = known(None, omit=is_none)
    tags: dict[str, int] = known(factory=dict, omit=is_empty)
    inner: Inner = field(default_factory=Inner)
    parts: dict[str, Inner] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def test_unknown_keys_are_kept_and_written_first_then_the_fields_in_order() -> None:
    data = {"later": [1], "count": 3, "name": "n", "inner": {"size": [2, 3], "newer": True}, "ratio": 2}
    rec = Outer.from_dict(data)
    assert (rec.name, rec.count, rec.ratio, rec.on, rec.note, rec.tags) == ("n", 3, 2, False, None, {})
    assert rec.extra == {"later": [1]} and rec.inner.extra == {"newer": True} and rec.inner.size == [2, 3]
    out = rec.to_dict()
    assert list(out) == ["later", "name", "count", "ratio", "on", "inner", "parts"]  # note, tags: omitted when empty
    assert out["inner"] == {"newer": True, "size": [2, 3], "kind": "a"}
    assert Outer.from_dict(json.loads(json.dumps(out))) == rec
    assert Outer.from_dict({}) == Outer()  # every key missing: the defaults


@pytest.mark.parametrize(
    "data,message",
    [
        ({"count": "3"}, "count is '3', of the wrong type"),
        ({"count": True}, "count is True, of the wrong type"),  # a bool is no whole number here
        ({"count": 1.0}, "count is 1.0, of the wrong type"),
        ({"ratio": "x"}, "ratio is 'x', of the wrong type"),
        ({"on": 1}, "on is 1, of the wrong type"),
        ({"note": 5}, "note is 5, of the wrong type"),
        ({"tags": {"a": "b"}}, "tags is {'a': 'b'}, of the wrong type"),
        ({"tags": []}, "tags is [], of the wrong type"),
        ({"inner": []}, "inner is [], of the wrong type"),
        ({"inner": {"size": "big"}}, "inner.size is 'big', not [height, width]"),
        ({"inner": {"size": [1, 2, 3]}}, "size is [1, 2, 3], not [height, width]"),
        ({"inner": {"kind": "c"}}, "inner.kind is 'c', of the wrong type"),
        ({"parts": {"p": {"size": ["1", 2]}}}, "parts.p.size is ['1', 2], not [height, width]"),
        ({"count": "x" * 100}, "count is '" + "x" * 56 + "..., of the wrong type"),  # quoted values are cut at 60
    ],
)
def test_a_field_of_the_wrong_type_is_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRecord) as err:
        Outer.from_dict(data)
    assert str(err.value) == message


def test_a_nested_record_raises_its_own_error_and_a_non_object_is_refused() -> None:
    with pytest.raises(Damaged):
        Outer.from_dict({"inner": {"size": [1]}})
    with pytest.raises(BadRecord, match="the record is not a JSON object"):
        Outer.from_dict(["not", "a", "dict"])
    with pytest.raises(Damaged, match="inner is not a JSON object"):
        Inner.from_dict(None, "inner.")
    assert Outer.from_dict({"parts": {"p": {"size": [4, 5]}}}).parts["p"].size == [4, 5]


def test_a_field_type_the_helper_has_no_rule_for_is_a_programming_error() -> None:
    @dataclass
    class Odd(Record):
        when: complex = 0j
        extra: dict[str, Any] = field(default_factory=dict)

    with pytest.raises(TypeError, match="no rule for fields of type"):
        Odd.from_dict({"when": 1j})
