"""How the router reaches each version's server: one HTTP session per version
(`Upstreams`), a forwarded call (`Forwarder`), and concurrent requests' trips for one
version coalesced into one call (`Coalescer`). A version that does not answer is
`Unavailable`, for that version's trips only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import aiohttp
import orjson

from {{ cookiecutter.package }}.serving.limits import in_chunks


class Unavailable(Exception):
    """A version's server did not answer a forwarded request (the detail is logged)."""

    def __init__(self, version: str, detail: str, timed_out: bool = False) -> None:
        super().__init__(f"{version}: {detail}")
        self.version, self.detail, self.timed_out = version, detail, timed_out


class Upstreams:
    """One HTTP client session per version: a version whose server hangs holds only its own
    connections, never the ones other versions' requests need. Every forwarded request is
    bounded by `timeout_s` (`serving.upstream_timeout_seconds`), connecting by at most 1 s.

    aiohttp, not httpx: on loopback its round trip costs about 0.8 ms less (measured), and
    that is most of what the router adds to a prediction.
    """

    # Connections per version: aiohttp's default of 100 made requests beyond it queue for a
    # connection inside the timeout (at 128 concurrent requests, some timed out).
    MAX_CONNECTIONS = 1000

    def __init__(self, timeout_s: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(1.0, timeout_s))
        self.sessions: dict[str, aiohttp.ClientSession] = {}

    def of(self, version: str) -> aiohttp.ClientSession:
        if version not in self.sessions:
            self.sessions[version] = aiohttp.ClientSession(
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(limit=self.MAX_CONNECTIONS),
                # Neither cookies nor compression between the router and a server: each
                # would cost every forwarded call something for nothing.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self.sessions[version]

    async def close(self) -> None:
        sessions, self.sessions = self.sessions, {}
        for session in sessions.values():
            await session.close()


class Coalescer:
    """The trips of concurrent requests for one version, forwarded in one upstream call.

    Under load most of a forwarded request's cost is the call itself (HTTP, JSON), not its
    trips, and a request whose trips span two versions costs two calls. Here a request's
    trips go out at once when no call to their version is in flight; otherwise they wait
    for one to finish, at most `max_wait_ms`, and go out together with the trips that
    gathered meanwhile. Calls carry at most `limits.MAX_TRIPS` trips, and a call
    that fails fails the requests it carried, as their own calls would have.
    """

    def __init__(
        self,
        forward: Callable[[str, bytes], Awaitable[list[dict[str, Any]]]],
        max_wait_ms: float = 2.0,
    ) -> None:
        self.forward, self.max_wait_s = forward, max_wait_ms / 1000
        self.pending: dict[str, list[tuple[list[Any], asyncio.Future[list[dict]]]]] = {}
        self.in_flight: dict[str, int] = {}
        self.finished: dict[str, list[asyncio.Future[None]]] = {}
        self.calls = 0
        self.tasks: set[asyncio.Task] = set()  # held until done (asyncio keeps weak refs)

    async def __call__(self, version: str, trips: list[Any]) -> list[dict[str, Any]]:
        future: asyncio.Future[list[dict]] = asyncio.get_running_loop().create_future()
        waiting = self.pending.setdefault(version, [])
        waiting.append((trips, future))
        if len(waiting) == 1:
            task = asyncio.create_task(self._dispatch(version))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await future

    async def _dispatch(self, version: str) -> None:
        await asyncio.sleep(0)  # one turn: the requests that arrived with this one join
        if self.in_flight.get(version):
            finished = asyncio.get_running_loop().create_future()
            self.finished.setdefault(version, []).append(finished)
            with suppress(TimeoutError):
                await asyncio.wait_for(finished, self.max_wait_s)
        chunks = in_chunks(self.pending.pop(version, []), lambda item: len(item[0]))
        if len(chunks) == 1:  # most often: no task for gather to make
            await self._send(version, chunks[0])
        else:
            await asyncio.gather(*(self._send(version, chunk) for chunk in chunks))

    async def _send(
        self, version: str, chunk: list[tuple[list[Any], asyncio.Future[list[dict]]]]
    ) -> None:
        self.calls += 1
        self.in_flight[version] = self.in_flight.get(version, 0) + 1
        trips = [trip for request, _ in chunk for trip in request]
        try:
            answers = await self.forward(version, orjson.dumps({"trips": trips}))
            if len(answers) != len(trips):
                raise Unavailable(version, f"answered {len(answers)} of {len(trips)} trips")
        except Exception as error:  # Unavailable, or a bug: the chunk's requests get it
            for _, future in chunk:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            self.in_flight[version] -= 1
            for finished in self.finished.pop(version, []):
                if not finished.done():
                    finished.set_result(None)
        start = 0
        for request, future in chunk:
            if not future.done():
                future.set_result(answers[start : start + len(request)])
            start += len(request)


class Forwarder:
    """Posts a request body to one version's server and returns its predictions, each
    marked with the version; any failure is `Unavailable`."""

    def __init__(
        self,
        upstream: Callable[[str], str],
        sessions: Upstreams,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.upstream, self.sessions = upstream, sessions
        # Told each call's version, outcome (ok, error, timeout) and seconds.
        self.observe = observe

    async def __call__(self, version: str, body: bytes) -> list[dict[str, Any]]:
        if self.observe is None:
            return await self._call(version, body)
        started = time.perf_counter()
        outcome = "error"
        try:
            predictions = await self._call(version, body)
            outcome = "ok"
            return predictions
        except Unavailable as failure:
            outcome = "timeout" if failure.timed_out else "error"
            raise
        finally:
            self.observe(version, outcome, time.perf_counter() - started)

    async def _call(self, version: str, body: bytes) -> list[dict[str, Any]]:
        url = f"{self.upstream(version)}/v{version}/predict"
        for attempt in (1, 2):
            try:
                async with self.sessions.of(version).post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as response:
                    if response.status != 200:
                        raise Unavailable(version, f"{url} answered {response.status}")
                    predictions = orjson.loads(await response.read())["predictions"]
                break
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
                # A kept-alive connection to a server that restarted is dead: aiohttp drops
                # it, and one new connection tells whether the server is back.
                if attempt == 2:
                    raise Unavailable(version, f"{url}: {type(error).__name__}: {error}") from None
            except TimeoutError as error:
                raise Unavailable(version, f"{url}: timed out {error}", timed_out=True) from None
            except (aiohttp.ClientError, ValueError, KeyError, TypeError) as error:
                raise Unavailable(version, f"{url}: {type(error).__name__}: {error}") from None
        for prediction in predictions:
            prediction["version"] = version
        return predictions
