"""Imported at start by every Python process that has this folder on `PYTHONPATH`: the cost bench starts
`footfall serve` so, and with `FOOTFALL_METER_DIR` set each of its processes bills its embedded-database requests
(`benchmarks/meter.py`, `meter_this_process`). Without the variable it does nothing."""

import os

if os.environ.get("FOOTFALL_METER_DIR"):
    from pathlib import Path

    import meter  # benchmarks/ is on PYTHONPATH too

    meter.meter_this_process(
        Path(os.environ["FOOTFALL_METER_DIR"]),
        qualify=dict(pair.split("=", 1) for pair in os.environ.get("FOOTFALL_METER_QUALIFY", "").split(",") if pair),
    )
