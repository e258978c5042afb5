"""Update expressions: SET (with `+`/`-`, `if_not_exists`, `list_append`), REMOVE, ADD and DELETE, on top-level
attributes; every operand is read from the item as it was before the update, as DynamoDB does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.storage.sqlite.expressions import (
    NUMBER_CONTEXT,
    ExpressionError,
    Item,
    Names,
    Value,
    _Parser,
    _top_level,
    number,
    number_text,
    resolve,
    type_of,
)


@dataclass(frozen=True)
class Update:
    """A parsed update expression: SET (name → value tree), REMOVE, ADD and DELETE (name → value)."""

    set: dict[str, tuple[Any, ...]]
    remove: list[str]
    add: dict[str, Value]
    delete: dict[str, Value]

    def names(self) -> list[str]:
        return [*self.set, *self.remove, *self.add, *self.delete]


def parse_update(text: str, names: Names) -> Update:
    """Parse an update expression (each clause at most once; no two actions on one attribute)."""
    parser = _Parser(text, names, "UpdateExpression")
    update = Update({}, [], {}, {})
    seen: set[str] = set()
    touched: list[str] = []
    while parser.peek()[0] != "end":
        clause = parser.take()[1].upper()
        if clause not in ("SET", "REMOVE", "ADD", "DELETE"):
            raise ExpressionError(f'Invalid UpdateExpression: Syntax error; token: "{clause}"')
        if clause in seen:
            raise ExpressionError(
                f'Invalid UpdateExpression: The "{clause}" section can only be used once in an update expression;'
            )
        seen.add(clause)
        touched += _parse_clause(parser, clause, names, update)
    if not seen:
        raise ExpressionError("Invalid UpdateExpression: The expression can not be empty;")
    if len(set(touched)) != len(touched):
        raise ExpressionError(
            "Invalid UpdateExpression: Two document paths overlap with each other; "
            "must remove or rewrite one of these paths"
        )
    return update


def _parse_clause(parser: _Parser, clause: str, names: Names, update: Update) -> list[str]:
    """One clause's comma-separated actions into `update`; returns the attributes they touch."""
    touched: list[str] = []
    while True:
        target = _top_level(parser.path(), "UpdateExpression")
        touched.append(target)
        if clause == "SET":
            parser.take("=")
            update.set[target] = _set_value(parser)
        elif clause == "REMOVE":
            update.remove.append(target)
        else:
            kind, token = parser.take()
            if kind != "value":
                raise ExpressionError(f'Invalid UpdateExpression: Syntax error; token: "{token}"')
            (update.add if clause == "ADD" else update.delete)[target] = names.value(token)
        if parser.peek()[1] != ",":
            return touched
        parser.take()


def _set_value(parser: _Parser) -> tuple[Any, ...]:
    left = _set_operand(parser)
    if parser.peek()[1] in ("+", "-"):
        op = parser.take()[1]
        return ("arith", op, left, _set_operand(parser))
    return left


def _set_operand(parser: _Parser) -> tuple[Any, ...]:
    kind, token = parser.peek()
    if kind == "word" and token in ("if_not_exists", "list_append") and parser.peek(1)[1] == "(":
        parser.take()
        parser.take("(")
        first = _set_operand(parser) if token == "list_append" else parser.path()
        parser.take(",")
        second = _set_operand(parser)
        parser.take(")")
        return (token, first, second)
    if kind == "value":
        parser.take()
        return ("value", parser.names.value(token))
    return parser.path()


def apply_update(update: Update, item: Item) -> Item:
    """The item after an update; every operand is read from the item as it was before it."""
    result = {name: value for name, value in item.items() if name not in update.remove}
    for name, tree in update.set.items():
        result[name] = _set_result(tree, item)
    for name, value in update.add.items():
        result[name] = _add(item.get(name), value)
    for name, value in update.delete.items():
        remaining = _delete(item.get(name), value)
        if remaining is None:
            result.pop(name, None)
        else:
            result[name] = remaining
    return result


def _set_result(tree: tuple[Any, ...], item: Item) -> Value:
    kind = tree[0]
    if kind == "value":
        return dict(tree[1])
    if kind == "path":
        found = resolve(item, tree[1])
        if found is None:
            raise ExpressionError("The provided expression refers to an attribute that does not exist in the item")
        return found
    if kind == "if_not_exists":
        found = resolve(item, tree[1][1])
        return found if found is not None else _set_result(tree[2], item)
    if kind == "list_append":
        first, second = _set_result(tree[1], item), _set_result(tree[2], item)
        if type_of(first) != "L" or type_of(second) != "L":
            raise ExpressionError("An operand in the update expression has an incorrect data type")
        return {"L": [*first["L"], *second["L"]]}
    left, right = _set_result(tree[2], item), _set_result(tree[3], item)  # arith
    if type_of(left) != "N" or type_of(right) != "N":
        raise ExpressionError("An operand in the update expression has an incorrect data type")
    total = number(left["N"]) + number(right["N"]) if tree[1] == "+" else number(left["N"]) - number(right["N"])
    return {"N": number_text(NUMBER_CONTEXT.plus(total))}


def _add(current: Value | None, value: Value) -> Value:
    kind = type_of(value)
    if kind not in ("N", "SS", "NS", "BS"):
        raise ExpressionError(
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD"
        )
    if current is None:
        return dict(value)
    if type_of(current) != kind:
        raise ExpressionError("An operand in the update expression has an incorrect data type")
    if kind == "N":
        return {"N": number_text(NUMBER_CONTEXT.add(number(current["N"]), number(value["N"])))}
    return {kind: _union(kind, current[kind], value[kind])}


def _union(kind: str, first: list[Any], second: list[Any]) -> list[Any]:
    key: Callable[[Any], Any] = number if kind == "NS" else (lambda v: v)
    merged = {key(v): v for v in first}
    for member in second:
        merged.setdefault(key(member), member)
    return list(merged.values())


def _delete(current: Value | None, value: Value) -> Value | None:
    kind = type_of(value)
    if kind not in ("SS", "NS", "BS"):
        raise ExpressionError(
            "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE"
        )
    if current is None:
        return None
    if type_of(current) != kind:
        raise ExpressionError("An operand in the update expression has an incorrect data type")
    key: Callable[[Any], Any] = number if kind == "NS" else (lambda v: v)
    gone = {key(v) for v in value[kind]}
    left = [member for member in current[kind] if key(member) not in gone]
    return {kind: left} if left else None
