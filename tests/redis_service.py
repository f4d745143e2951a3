"""A private Redis server for a test: its own process on a free loopback port, in a temporary
folder, nothing persisted. Without redis-server (or the distributed extra) a test is skipped on
a developer's machine and fails in CI (CI=true), where `.ci/run` installs both."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def require(what: str, present: bool) -> None:
    if present:
        return
    message = f"{what} is missing (the distributed mode's tests need it: make services)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """Start redis-server; yields its URL; stops it (SIGTERM) at the end."""
    binary = shutil.which("redis-server")
    require("redis-server", binary is not None)
    try:
        import redis
    except ImportError:
        redis = None  # type: ignore[assignment]
    require("the distributed extra (celery, redis)", redis is not None)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start: "
                                       f"{(directory / 'redis.log').read_text()[-500:]}") from None
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)
