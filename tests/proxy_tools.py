"""A TCP proxy in front of the test broker, in a thread: the broker advertises the
proxy's port, so every client's connection passes through it. ``cut()`` drops every
connection and refuses new ones (a network partition as clients see it: resets),
``restore()`` lets them through again. ``refuse_produce(prefix)`` drops the connections
of clients whose client.id starts with ``prefix`` as soon as they send a Produce request
(the daemon's output path is down; its consumer, and the test's own producer, are not).
``delay_fetch(prefix, seconds)`` holds each Fetch request of such clients that long (a slow
broker for them: the state topic's reader, whose client.id is librdkafka's default ``rdkafka``).
With an ``ssl`` context it terminates TLS."""

from __future__ import annotations

import asyncio
import ssl
import struct
import threading
from contextlib import suppress
from types import TracebackType

__all__ = ["TcpProxy"]


class TcpProxy:
    def __init__(self, listen_port: int, target_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.tls = tls
        self.open = True
        self.produce_refused_for: str | None = None
        self.produce_refusals = 0
        self.fetch_delayed_for: tuple[str, float] | None = None
        self.fetches_delayed = 0
        self.accepted = 0
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None

    # -- faults ----------------------------------------------------------------------

    def cut(self) -> None:
        """Drop every connection now; refuse new ones until :meth:`restore`."""
        done = threading.Event()

        def drop() -> None:
            self.open = False
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()
            done.set()

        self._loop.call_soon_threadsafe(drop)
        done.wait(5)

    def restore(self) -> None:
        self.open = True

    def refuse_produce(self, client_id_prefix: str | None) -> None:
        """Refuse Produce requests of clients whose id starts with the prefix (None: allow again)."""
        self.produce_refused_for = client_id_prefix

    def delay_fetch(self, client_id_prefix: str | None, seconds: float = 0.0) -> None:
        """Hold each Fetch request of clients whose id starts with the prefix ``seconds`` (None: no more)."""
        self.fetch_delayed_for = None if client_id_prefix is None else (client_id_prefix, seconds)

    # -- the proxy ---------------------------------------------------------------------

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client to broker, a Kafka request at a time (size, api key, version, correlation id,
        client id), so that a refused Produce drops the connection before it reaches the broker."""
        try:
            while True:
                size = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack(">i", size)[0])
                api_key = struct.unpack(">h", body[:2])[0]
                id_len = struct.unpack(">h", body[8:10])[0]
                client_id = body[10 : 10 + id_len].decode(errors="replace") if id_len > 0 else ""
                refused = self.produce_refused_for
                if api_key == 0 and refused is not None and client_id.startswith(refused):
                    self.produce_refusals += 1
                    writer.transport.abort()
                    return
                delayed = self.fetch_delayed_for
                if api_key == 1 and delayed is not None and client_id.startswith(delayed[0]):
                    self.fetches_delayed += 1
                    until = self._loop.time() + delayed[1]
                    while self.fetch_delayed_for is not None and self._loop.time() < until:
                        await asyncio.sleep(0.1)  # let go at once by delay_fetch(None)
                writer.write(size + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if not self.open:
            self.refused += 1
            client_w.transport.abort()
            return
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self.accepted += 1
        self._writers |= {client_w, broker_w}
        try:
            await asyncio.gather(self._requests(client_r, broker_w), self._pipe(broker_r, client_w))
        finally:
            self._writers -= {client_w, broker_w}

    def start(self) -> TcpProxy:
        started = threading.Event()

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port, ssl=self.tls)
            started.set()
            async with server:
                await server.serve_forever()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            with suppress(asyncio.CancelledError):
                self._loop.run_until_complete(serve())

        self._thread = threading.Thread(target=run, daemon=True, name=f"proxy-{self.listen_port}")
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"the proxy did not listen on {self.listen_port}")
        return self

    def stop(self) -> None:
        for task in asyncio.all_tasks(self._loop):
            self._loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
