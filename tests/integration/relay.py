"""A TCP relay for tests: a slow network between a client and a real server, which makes
the keep-alive race happen every time instead of once in a while, and can cut the line.

The race: a client sends its next request on a pooled connection just as the server closes
it for being idle. On loopback the window is a fraction of a millisecond. The relay holds
what clients send for `delay` seconds, so a request sent at idle time t reaches the server
at t + delay: with t < keep-alive < t + delay the server closes the connection while the
request is on its way, and the relay, like a network, closes the client's side with no
answer. It counts those (`races`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from shared.servers import free_port, port_in_use
from shared.waiting import wait_until


class Relay:
    def __init__(self, target_port: int, delay: float):
        self.target_port, self.delay = target_port, delay
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.races = 0  # the server closed a connection while a request was on its way
        self.refused = 0  # connections closed at once while the line was cut
        self._cut = False
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()

    async def _pipe(self, client_r, client_w, server_r, server_w) -> None:
        in_flight = 0  # chunks from the client not yet delivered to the server
        closed = asyncio.Event()

        async def deliver(data: bytes) -> None:
            nonlocal in_flight
            await asyncio.sleep(self.delay)
            in_flight -= 1
            if not closed.is_set():
                server_w.write(data)

        async def upstream() -> None:  # client -> server, late
            nonlocal in_flight
            while data := await client_r.read(65536):
                in_flight += 1
                asyncio.ensure_future(deliver(data))
            closed.set()

        async def downstream() -> None:  # server -> client, at once
            while data := await server_r.read(65536):
                client_w.write(data)
            if in_flight and not closed.is_set():
                self.races += 1
            closed.set()

        up, down = asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())
        await closed.wait()
        for task in (up, down):
            task.cancel()
        for writer in (client_w, server_w):
            writer.close()
            self._open.discard(writer)

    async def _handle(self, client_r, client_w) -> None:
        if self._cut:
            self.refused += 1
            client_w.close()
            return
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self._open.update((client_w, server_w))
        try:
            await self._pipe(client_r, client_w, server_r, server_w)
        except (OSError, asyncio.CancelledError):
            client_w.close()
            server_w.close()

    def cut(self) -> None:
        """The line goes down: open connections are closed, new ones closed at once."""

        def close_all() -> None:
            self._cut = True
            for writer in list(self._open):
                writer.close()

        self._loop.call_soon_threadsafe(close_all)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_cut", False)

    @contextmanager
    def running(self) -> Iterator[Relay]:
        """The relay, listening on `url`, for the block."""

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            async with server:
                await server.serve_forever()

        thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        thread.start()
        serving = asyncio.run_coroutine_threadsafe(serve(), self._loop)
        wait_until(
            lambda: port_in_use(self.port), 10, f"the relay listening on {self.port}", every=0.05
        )
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop).result(10)
            serving.cancel()
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(5)


async def _cancel_all() -> None:
    """Cancel every other task of the running loop (the server, pipes, deliveries) and wait."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
