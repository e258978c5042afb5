"""DynamoDB's expression language (condition, filter, key condition, update, projection) on wire-form items.

A tokenizer and a recursive-descent parser for the documented grammar, and an evaluator over items in DynamoDB's
wire form (`{"S": ...}`, `{"N": "1"}`, ...). Numbers are compared and added as decimals (the `N` type's
semantics). What the grammar allows but this evaluator does not (nested paths in updates and projections) is
refused with a `ValidationException`, never answered wrongly; so are reserved words used as bare names, unused
or undefined `ExpressionAttributeNames`/`Values`, and operands of the wrong type, as DynamoDB refuses them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from shared.storage.sqlite.reserved import RESERVED_WORDS

Item = dict[str, dict[str, Any]]
Value = dict[str, Any]

NUMBER_CONTEXT = Context(prec=38)
"""DynamoDB numbers: up to 38 digits of precision."""
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+)|(?P<name>#[A-Za-z0-9_]+)|(?P<value>:[A-Za-z0-9_]+)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><>|<=|>=|[=<>(),.\[\]+-]))"
)
_FUNCTIONS = {"attribute_exists", "attribute_not_exists", "attribute_type", "begins_with", "contains"}
_COMPARATORS = {"=", "<>", "<", "<=", ">", ">="}
_TYPES = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}


class ExpressionError(ValueError):
    """An expression DynamoDB would refuse with a ValidationException (the message says why)."""


# --- parsing -----------------------------------------------------------------------------------------------------


@dataclass
class Names:
    """Expression attribute names and values, tracking which are used (DynamoDB refuses unused ones)."""

    names: Mapping[str, str]
    values: Mapping[str, Value]
    used_names: set[str] = field(default_factory=set)
    used_values: set[str] = field(default_factory=set)

    def name(self, token: str) -> str:
        if token not in self.names:
            raise ExpressionError(f"An expression attribute name used in the document path is not defined: {token}")
        self.used_names.add(token)
        return self.names[token]

    def value(self, token: str) -> Value:
        if token not in self.values:
            raise ExpressionError(f"An expression attribute value used in expression is not defined: {token}")
        self.used_values.add(token)
        return self.values[token]

    def check_all_used(self) -> None:
        """Raise like DynamoDB when a name or value was given but no expression used it."""
        if unused := sorted(set(self.names) - self.used_names):
            raise ExpressionError(
                f"Value provided in ExpressionAttributeNames unused in expressions: keys: {{{', '.join(unused)}}}"
            )
        if unused := sorted(set(self.values) - self.used_values):
            raise ExpressionError(
                f"Value provided in ExpressionAttributeValues unused in expressions: keys: {{{', '.join(unused)}}}"
            )


class _Parser:
    def __init__(self, text: str, names: Names, kind: str) -> None:
        self.kind = kind
        self.names = names
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = text.rstrip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise ExpressionError(f'Invalid {kind}: Syntax error; token: "{text[position : position + 10]}"')
            kind_, token = next((k, v) for k, v in match.groupdict().items() if v is not None)
            self.tokens.append((kind_, token))
            position = match.end()
        self.at = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def word(self, *words: str) -> bool:
        kind, token = self.peek()
        return kind == "word" and token.upper() in words

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (expected is not None and token[1].upper() != expected):
            found = token[1] or "<EOF>"
            raise ExpressionError(f'Invalid {self.kind}: Syntax error; token: "{found}", expected: {expected}')
        self.at += 1
        return token

    def done(self) -> None:
        if self.peek()[0] != "end":
            raise ExpressionError(f'Invalid {self.kind}: Syntax error; token: "{self.peek()[1]}"')

    # condition ::= or ; or ::= and (OR and)* ; and ::= not (AND not)* ; not ::= NOT not | primary
    def condition(self) -> tuple[Any, ...]:
        node = self._and()
        while self.word("OR"):
            self.take()
            node = ("or", node, self._and())
        return node

    def _and(self) -> tuple[Any, ...]:
        node = self._not()
        while self.word("AND"):
            self.take()
            node = ("and", node, self._not())
        return node

    def _not(self) -> tuple[Any, ...]:
        if self.word("NOT"):
            self.take()
            return ("not", self._not())
        return self._primary()

    def _primary(self) -> tuple[Any, ...]:
        kind, token = self.peek()
        if token == "(":
            self.take()
            node = self.condition()
            self.take(")")
            return node
        if kind == "word" and token in _FUNCTIONS and self.peek(1)[1] == "(":
            return self._function()
        left = self.operand()
        if self.word("BETWEEN"):
            self.take()
            low = self.operand()
            self.take("AND")
            return ("between", left, low, self.operand())
        if self.word("IN"):
            self.take()
            self.take("(")
            options = [self.operand()]
            while self.peek()[1] == ",":
                self.take()
                options.append(self.operand())
            self.take(")")
            if len(options) > 100:
                raise ExpressionError(f"Invalid {self.kind}: The IN operator accepts at most 100 operands")
            return ("in", left, options)
        op = self.take()[1]
        if op not in _COMPARATORS:
            raise ExpressionError(f'Invalid {self.kind}: Syntax error; token: "{op}"')
        return ("cmp", op, left, self.operand())

    def _function(self) -> tuple[Any, ...]:
        name = self.take()[1]
        self.take("(")
        args = [self.operand()]
        while self.peek()[1] == ",":
            self.take()
            args.append(self.operand())
        self.take(")")
        arity = 1 if name in ("attribute_exists", "attribute_not_exists") else 2
        if len(args) != arity or args[0][0] != "path":
            raise ExpressionError(f"Invalid {self.kind}: Incorrect number or type of arguments for {name}")
        return ("fn", name, args)

    def operand(self) -> tuple[Any, ...]:
        kind, token = self.peek()
        if kind == "value":
            self.take()
            return ("value", self.names.value(token))
        if kind == "word" and token == "size" and self.peek(1)[1] == "(":
            self.take()
            self.take("(")
            path = self.path()
            self.take(")")
            return ("size", path)
        return self.path()

    def path(self) -> tuple[Any, ...]:
        steps: list[str | int] = [self._name()]
        while self.peek()[1] in (".", "["):
            if self.take()[1] == ".":
                steps.append(self._name())
            else:
                kind, token = self.take()
                if kind != "num":
                    raise ExpressionError(f'Invalid {self.kind}: Syntax error; token: "{token}"')
                steps.append(int(token))
                self.take("]")
        return ("path", tuple(steps))

    def _name(self) -> str:
        kind, token = self.take()
        if kind == "name":
            return self.names.name(token)
        if kind != "word":
            raise ExpressionError(f'Invalid {self.kind}: Syntax error; token: "{token}"')
        if token.upper() in RESERVED_WORDS:
            raise ExpressionError(
                f"Invalid {self.kind}: Attribute name is a reserved keyword; reserved keyword: {token}"
            )
        return token


def parse_condition(text: str, names: Names, kind: str = "ConditionExpression") -> tuple[Any, ...]:
    """Parse a condition, filter or key condition expression into a tree."""
    parser = _Parser(text, names, kind)
    node = parser.condition()
    parser.done()
    return node


def parse_projection(text: str, names: Names) -> list[str]:
    """Top-level attribute names of a projection expression."""
    parser = _Parser(text, names, "ProjectionExpression")
    found = [_top_level(parser.path(), "ProjectionExpression")]
    while parser.peek()[1] == ",":
        parser.take()
        found.append(_top_level(parser.path(), "ProjectionExpression"))
    parser.done()
    return found


def _top_level(path: tuple[Any, ...], kind: str) -> str:
    if len(path[1]) != 1:
        raise ExpressionError(f"Invalid {kind}: nested document paths are not supported by the embedded engine")
    return str(path[1][0])


# --- values ------------------------------------------------------------------------------------------------------


def number(text: str) -> Decimal:
    """An `N` value as a decimal."""
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise ExpressionError(f"A value provided cannot be converted into a number: {text}") from exc


def number_text(value: Decimal) -> str:
    """A decimal as DynamoDB writes an `N` value (no exponent, no trailing zeros)."""
    text = format(value.normalize(NUMBER_CONTEXT), "f")
    return "0" if text in ("-0", "0") else text


def type_of(value: Value) -> str:
    return next(iter(value))


def equal(a: Value | None, b: Value | None) -> bool:
    """DynamoDB equality: same type and value; numbers as decimals, sets unordered, maps and lists deep."""
    if a is None or b is None or type_of(a) != type_of(b):
        return False
    kind, x, y = type_of(a), a[type_of(a)], b[type_of(b)]
    if kind == "N":
        return number(x) == number(y)
    if kind == "NS":
        return {number(v) for v in x} == {number(v) for v in y}
    if kind in ("SS", "BS"):
        return set(x) == set(y)
    if kind == "M":
        return x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
    if kind == "L":
        return len(x) == len(y) and all(equal(p, q) for p, q in zip(x, y, strict=True))
    return bool(x == y)


def _ordered(a: Value | None, b: Value | None) -> tuple[Any, Any] | None:
    if a is None or b is None or type_of(a) != type_of(b) or type_of(a) not in ("S", "N", "B"):
        return None
    if type_of(a) == "N":
        return number(a["N"]), number(b["N"])
    if type_of(a) == "S":
        return a["S"].encode(), b["S"].encode()  # DynamoDB orders strings by their UTF-8 bytes
    return bytes(a["B"]), bytes(b["B"])


def compare(op: str, a: Value | None, b: Value | None) -> bool:
    """A comparison as DynamoDB makes it: false (not an error) across types or on a missing attribute."""
    if op == "=":
        return equal(a, b)
    if op == "<>":
        return a is not None and b is not None and not equal(a, b)
    pair = _ordered(a, b)
    if pair is None:
        return False
    x, y = pair
    return bool({"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op])


# --- evaluation --------------------------------------------------------------------------------------------------


def resolve(item: Item, steps: tuple[str | int, ...]) -> Value | None:
    """The value at a document path, or None."""
    value: Any = {"M": item}
    for step in steps:
        if isinstance(step, int):
            if type_of(value) != "L" or step >= len(value["L"]):
                return None
            value = value["L"][step]
        else:
            if type_of(value) != "M" or step not in value["M"]:
                return None
            value = value["M"][step]
    return dict(value)


def operand_value(item: Item, node: tuple[Any, ...]) -> Value | None:
    if node[0] == "value":
        return dict(node[1])
    if node[0] == "path":
        return resolve(item, node[1])
    value = resolve(item, node[1][1])  # size(path)
    if value is None:
        return None
    kind = type_of(value)
    if kind == "S":
        return {"N": str(len(value["S"]))}
    if kind == "B":
        return {"N": str(len(value["B"]))}
    if kind in ("SS", "NS", "BS", "L", "M"):
        return {"N": str(len(value[kind]))}
    return None


def evaluate(node: tuple[Any, ...], item: Item) -> bool:
    """Whether `item` (empty for a missing item) satisfies a parsed condition."""
    match node[0]:
        case "or":
            return evaluate(node[1], item) or evaluate(node[2], item)
        case "and":
            return evaluate(node[1], item) and evaluate(node[2], item)
        case "not":
            return not evaluate(node[1], item)
        case "cmp":
            return compare(node[1], operand_value(item, node[2]), operand_value(item, node[3]))
        case "between":
            value, low, high = (operand_value(item, n) for n in node[1:])
            return compare(">=", value, low) and compare("<=", value, high)
        case "in":
            value = operand_value(item, node[1])
            return any(equal(value, operand_value(item, option)) for option in node[2])
        case _:
            return _function(node[1], [operand_value(item, arg) for arg in node[2]])


def _function(name: str, args: list[Value | None]) -> bool:
    subject = args[0]
    if name == "attribute_exists":
        return subject is not None
    if name == "attribute_not_exists":
        return subject is None
    other = args[1]
    if other is None:
        return False
    if name == "attribute_type":
        if type_of(other) != "S" or other["S"] not in _TYPES:
            raise ExpressionError(f"Invalid ConditionExpression: Invalid attribute type name found; type: {other}")
        return subject is not None and type_of(subject) == other["S"]
    if subject is None:
        return False
    if name == "begins_with":
        pair = _ordered(subject, other)
        return pair is not None and type_of(subject) != "N" and pair[0].startswith(pair[1])
    return _contains(subject, other)


def _contains(subject: Value, other: Value) -> bool:
    kind = type_of(subject)
    if kind == "S" and type_of(other) == "S":
        return other["S"] in subject["S"]
    if kind in ("SS", "NS", "BS") and type_of(other) == kind[0]:
        return any(equal({kind[0]: member}, other) for member in subject[kind])
    if kind == "L":
        return any(equal(member, other) for member in subject["L"])
    return False
