"""The derived state as a customer item's body keeps it (`shared.ports.Derived`; `shared.storage.items` puts it in
the body, or leaves a `spare` one out where it would cost a write unit)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain import cell_state, rule_state
from shared.ports import Derived

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def derived_out(derived: Derived) -> dict[str, Any]:
    """The state that spares a batch the customer's history, as body JSON (see `Derived`)."""
    out: dict[str, Any] = {"ids": list(derived.identities), "at": _micros(derived.at)}
    if derived.rules is not None:
        out["rules"] = rule_state.to_compact(derived.rules)
    if derived.cells is not None:
        out["cells"] = cell_state.to_compact(derived.cells)
    if derived.expires is not None:
        out["exp"] = int(derived.expires.timestamp())
    out["n"] = derived.events
    return out


def derived_in(data: Any) -> Derived | None:
    """`derived_out`'s state; None when absent or unreadable (the history is then read, and the state rebuilt: a
    state is never a reason to refuse the customer item)."""
    if not isinstance(data, dict):
        return None
    try:
        return Derived(
            identities=tuple(str(identity) for identity in data["ids"]),
            at=EPOCH + timedelta(microseconds=int(data["at"])),
            rules=rule_state.from_compact(data["rules"]) if "rules" in data else None,
            cells=cell_state.from_compact(data["cells"]) if "cells" in data else None,
            expires=datetime.fromtimestamp(int(data["exp"]), UTC) if "exp" in data else None,
            events=int(data.get("n", 0)),
        )
    except Exception:  # (a state written by another version of these forms)
        logger.warning("a customer item's derived state cannot be read; its history will be")
        return None


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)
