"""The bill: per entity (`Line`), per operation, and what could not be billed (`Ledger`), as JSON and summed
over processes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Line:
    """One entity's bill."""

    writes: int = 0
    """Item writes billed (each put, update, delete, condition check, failed condition; not index writes)."""
    wu: float = 0.0
    """Table write units."""
    index_writes: int = 0
    index_wu: float = 0.0
    failed_conditions: int = 0
    reads: int = 0
    """Items read (returned or evaluated)."""
    ru: float = 0.0

    @property
    def total_wu(self) -> float:
        return self.wu + self.index_wu


@dataclass
class Ledger:
    """The bill so far: per entity, per operation, and whatever the meter could not bill."""

    entities: dict[str, Line] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)
    free: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    """Operations the meter does not know how to bill (a non-empty one fails the bench)."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Requests answered with an error that consumes no capacity (throttling, validation), by error code."""
    replay_mismatches: int = 0
    """Replayed reads whose evaluated count differed from the answer's `ScannedCount` (sizes then approximate)."""
    components: dict[str, dict[str, int]] = field(default_factory=dict)
    """Requests by the function that made them (`footfall/<component>` in the User-Agent; "" when unnamed), by
    operation."""

    def line(self, entity: str) -> Line:
        return self.entities.setdefault(entity, Line())

    @property
    def wu(self) -> float:
        return sum(line.total_wu for line in self.entities.values())

    @property
    def ru(self) -> float:
        return sum(line.ru for line in self.entities.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "entities": {name: asdict(line) for name, line in self.entities.items()},
            "operations": self.operations,
            "free": self.free,
            "unknown": self.unknown,
            "rejected": self.rejected,
            "replay_mismatches": self.replay_mismatches,
            "components": self.components,
        }

    def add(self, other: Ledger) -> None:
        """Add `other`'s bill to this one (the ledgers of several processes)."""
        for name, line in other.entities.items():
            mine = self.line(name)
            for counted, value in asdict(line).items():
                setattr(mine, counted, getattr(mine, counted) + value)
        for mine, theirs in (
            (self.operations, other.operations),
            (self.free, other.free),
            (self.unknown, other.unknown),
            (self.rejected, other.rejected),
        ):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        self.replay_mismatches += other.replay_mismatches
        for component, operations in other.components.items():
            made = self.components.setdefault(component, {})
            for operation, count in operations.items():
                made[operation] = made.get(operation, 0) + count

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ledger:
        return cls(
            entities={name: Line(**line) for name, line in data["entities"].items()},
            operations=dict(data["operations"]),
            free=dict(data["free"]),
            unknown=dict(data["unknown"]),
            rejected=dict(data["rejected"]),
            replay_mismatches=int(data["replay_mismatches"]),
            components={name: dict(ops) for name, ops in data.get("components", {}).items()},
        )


def ledger_rows(ledger: Ledger, events: int) -> list[tuple[str, int, float, float, float]]:
    """(entity, writes incl. index writes, WU, WU/event, RU/event) per entity, biggest bill first."""
    rows = [
        (name, line.writes + line.index_writes, line.total_wu, line.total_wu / events, line.ru / events)
        for name, line in ledger.entities.items()
    ]
    return sorted(rows, key=lambda row: (-row[2], -row[4], row[0]))
