"""Metering the processes of a `footfall serve` on the embedded database: `meter_this_process` (called in each
of them by `benchmarks/metered/sitecustomize.py`) dumps its ledger, `MeterDumps` (the bench's side) resets and sums
them."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.dynamo_meter.ledger import Ledger
from benchmarks.dynamo_meter.meter import Meter
from benchmarks.dynamo_meter.reader import BackendReader

DUMP_SECONDS = 0.2
GENERATION_FILE = "generation"


def meter_this_process(directory: Path, *, qualify: Mapping[str, str] | None = None) -> Meter:
    """Bill every embedded-database client this process makes through `shared.storage.dynamo.make_client` from now
    on (call it before the code that imports `make_client` by name), and dump the ledger to `<directory>/<pid>.json`
    every `DUMP_SECONDS`: `{"pid", "generation", "at", "ledger"}`. Writing a higher number into
    `<directory>/generation` resets the ledger (the next dump carries that generation). Images are read through an
    unmetered client on the same file."""
    import os
    import time

    from shared.storage import client as clients
    from shared.storage import dynamo
    from shared.storage.sqlite.engine import SqliteClient

    original = clients.make_client
    meter = Meter(qualify=qualify)

    def make_client(**options: Any) -> Any:
        client = original(**options)
        if isinstance(client, SqliteClient):
            if meter.reader is None:
                side = original(endpoint_url=options.get("endpoint_url"), region=options.get("region"))
                meter.reader = BackendReader(side, meter.schema)
            meter.attach(client, component=options.get("component") or "")
        return client

    clients.make_client = dynamo.make_client = make_client  # the bench's processes only (dynamo re-exports it)
    target = directory / f"{os.getpid()}.json"

    def dump_forever() -> None:
        generation = 0
        while True:
            with contextlib.suppress(OSError, ValueError):
                wanted = int((directory / GENERATION_FILE).read_text() or 0)
                if wanted > generation:
                    meter.reset()
                    generation = wanted
            dump = {
                "pid": os.getpid(),
                "generation": generation,
                "at": time.time(),
                "ledger": meter.snapshot().to_json(),
            }
            partial = target.with_suffix(".tmp")
            partial.write_text(json.dumps(dump))
            partial.replace(target)
            time.sleep(DUMP_SECONDS)

    threading.Thread(target=dump_forever, name="meter-dump", daemon=True).start()
    return meter


@dataclass
class MeterDumps:
    """The bench's side of `meter_this_process`: reset every process's ledger, and sum them."""

    directory: Path
    generation: int = 0

    def _live_dumps(self) -> list[dict[str, Any]]:
        import os

        dumps = []
        for path in self.directory.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                dump = json.loads(path.read_text())
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(dump["pid"]), 0)  # a process gone (never, while the stack runs) is left out
                    dumps.append(dump)
        return dumps

    def _wait(self, done: Any, timeout: float, what: str) -> list[dict[str, Any]]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dumps = self._live_dumps()
            if dumps and all(done(dump) for dump in dumps):
                return dumps
            time.sleep(DUMP_SECONDS / 2)
        raise RuntimeError(f"the metered processes did not {what} within {timeout:g} s")

    def reset(self, timeout: float = 30.0) -> None:
        """Start every process's ledger afresh; returns once each has (its next dump carries the new generation)."""
        self.generation += 1
        (self.directory / GENERATION_FILE).write_text(str(self.generation))
        self._wait(lambda dump: dump["generation"] == self.generation, timeout, "reset their ledgers")

    def ledger(self, timeout: float = 30.0) -> Ledger:
        """The sum of every process's ledger as of now (waits for a dump of each made after this call)."""
        import time

        asked = time.time()
        dumps = self._wait(
            lambda dump: dump["at"] > asked and dump["generation"] == self.generation, timeout, "dump their ledgers"
        )
        total = Ledger()
        for dump in dumps:
            total.add(Ledger.from_json(dump["ledger"]))
        return total
