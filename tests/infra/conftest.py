"""Fixtures for the deployment proofs: the translated template, one `sam build` per session, a moto server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import deploy
from tests.infra.cfn import sam_template, translate


@pytest.fixture(scope="session")
def translated() -> dict[str, Any]:
    """infra/template.yaml as CloudFormation (aws-sam-translator, offline)."""
    return translate(sam_template())


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build directory of `sam build`, run exactly as `footfall deploy` runs it (once per session: it is slow)."""
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    sam = deploy.find_sam()  # `make setup` installs it; a missing SAM CLI fails here, loudly, never skips
    done = subprocess.run(
        deploy.build_command(sam, build_dir=build_dir),
        env=deploy.sam_environment(),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=build_dir.parent,
    )
    assert done.returncode == 0, f"sam build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return build_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server in its own process (the Lambda handlers under test run in yet other processes)."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
