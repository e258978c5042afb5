"""The property-filter language: which events count, by their properties (segment rules and funnel steps alike).

A filter is a `where` mapping of property → test; an event passes when every test holds. A property is a name
or a dotted path into nested objects (`product.category`; a name that itself holds a dot is looked up as it is
first). A test is written either as an operator mapping, the same in every file:

    where: {revenue: {gte: 100}, currency: {in: [EUR, USD]}, coupon: {exists: false}}

with the operators `eq`, `ne`, `gt`, `gte`, `lt`, `lte` (numbers compared by value; a missing or incomparable
property fails every comparison but `ne`), `in` (any of a list, compared as text: `true`/`false` for booleans,
"" for a missing property) and `exists`; or as a shorthand, which keeps the meaning each file kind has always
given it: in a segment rule `{plan: pro}` is `eq` (the value as it is), in a funnel step `{plan: pro}` and
`{plan: [pro, team]}` are `in` (compared as text).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
OPERATORS = ("eq", "ne", *ORDERINGS, "in", "exists")
SHORTHANDS = ("eq", "in")
"""What a value written without an operator means: `eq` in segment rules, `in` in funnel steps."""


class FilterDefinitionError(ValueError):
    """A `where` that cannot be used; the message names where and why (each file kind wraps it in its own error)."""


@dataclass(frozen=True, slots=True)
class PropertyTest:
    """One property's test: `path` `op` `value` (`in`: a tuple of texts; `exists`: a bool)."""

    path: str
    op: str
    value: Any

    def holds(self, properties: Mapping[str, Any]) -> bool:
        """Business rule: whether the property passes the test (see the module docstring for each operator)."""
        actual = property_at(properties, self.path)
        if self.op == "eq":
            return bool(actual == self.value)
        if self.op == "ne":
            return bool(actual != self.value)
        if self.op == "in":
            return text(actual) in self.value
        if self.op == "exists":
            return (actual is not None) is bool(self.value)
        return _ordered(self.op, actual, self.value)

    def describe(self) -> str:
        """How a reason shows the test (`path=value` for an equality, as segments always showed it)."""
        if self.op == "eq":
            return f"{self.path}={self.value!r}"
        value = list(self.value) if self.op == "in" else self.value
        return f"{self.path} {self.op} {value!r}"


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    """Every test must hold (no tests: every event passes)."""

    tests: tuple[PropertyTest, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tests)

    def matches(self, properties: Mapping[str, Any]) -> bool:
        return all(test.holds(properties) for test in self.tests)

    def definition(self) -> dict[str, Any]:
        """The filter as a funnel file writes it (`in` as the list of its texts, other tests as `{op: value}`)."""
        return {test.path: _written(test) for test in self.tests}


NO_FILTER = PropertyFilter()
"""Every event passes."""


def parse_where(data: Any, where: str, *, shorthand: str) -> PropertyFilter:
    """A `where` mapping → a filter; `shorthand` (`eq` or `in`) is what a value without an operator means.

    Raises:
        FilterDefinitionError: naming `where`, the property and the problem.
    """
    if not isinstance(data, Mapping):
        raise FilterDefinitionError(f"{where}: expected a mapping of property to value (or to {{operator: value}})")
    tests = [_test(str(path), value, f"{where}.{path}", shorthand) for path, value in data.items()]
    return PropertyFilter(tuple(sorted(tests, key=lambda t: t.path)) if shorthand == "eq" else tuple(tests))


def property_at(properties: Mapping[str, Any], path: str) -> Any:
    """The value at a name (as it is) or a dotted path; None when there is none."""
    if path in properties:
        return properties[path]
    node: Any = properties
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def text(value: Any) -> str:
    """A value as `in` compares it: `true`/`false` for booleans, "" for none, else its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def number(value: Any) -> Any:
    """Numbers as Decimals (so 1, 1.0 and Decimal("1") compare equal); anything else as it is."""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return Decimal(str(value))
    return value


def _ordered(op: str, actual: Any, value: Any) -> bool:
    if actual is None:
        return False
    try:
        return bool(ORDERINGS[op](number(actual), number(value)))
    except TypeError:
        return False


def _test(path: str, value: Any, where: str, shorthand: str) -> PropertyTest:
    if not (isinstance(value, Mapping) and value and set(value) <= set(OPERATORS)):
        return PropertyTest(path, "eq", value) if shorthand == "eq" else _one_of(path, value)
    if len(value) != 1:
        raise FilterDefinitionError(f"{where}: one operator per property, found {', '.join(map(str, value))}")
    ((op, operand),) = value.items()
    if op == "in":
        if not isinstance(operand, list):
            raise FilterDefinitionError(f"{where}.in: expected a list of values")
        return _one_of(path, operand)
    if op == "exists" and not isinstance(operand, bool):
        raise FilterDefinitionError(f"{where}.exists: expected true or false")
    return PropertyTest(path, op, operand)


def _one_of(path: str, values: Any) -> PropertyTest:
    return PropertyTest(path, "in", tuple(text(v) for v in (values if isinstance(values, list) else [values])))


def _written(test: PropertyTest) -> Any:
    return list(test.value) if test.op == "in" else {test.op: test.value}
