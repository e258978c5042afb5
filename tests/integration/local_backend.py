"""The embedded backend as a child process, for tests that stop, kill and restart it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.local.backend import read_credentials
from shared.storage.dynamo import make_client


class Backend:
    """`python -m shared.local.backend` on a data directory; `start` answers a client with this start's keys."""

    def __init__(self, data_dir: Path, compact_mb: int) -> None:
        self.data_dir, self.compact_mb = data_dir, compact_mb
        self.process: subprocess.Popen[str] | None = None
        self.replayed = 0
        self.port = 0
        self.credentials: dict[str, str] = {}

    def start(self) -> Any:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shared.local.backend",
                "--data-dir",
                str(self.data_dir),
                "--compact-mb",
                str(self.compact_mb),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self.process.stdout.readline().split()
        assert ready[0] == "READY", ready
        self.replayed = int(ready[2].split("=")[1])
        self.port = int(ready[1])
        credentials = read_credentials(self.data_dir)
        assert credentials is not None
        self.credentials = credentials
        return make_client(endpoint_url=self.endpoint, region="us-east-1", credentials=credentials)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def streams_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "dynamodbstreams",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            config=Config(account_id_endpoint_mode="disabled"),
            **self.credentials,
        )

    def stop(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
