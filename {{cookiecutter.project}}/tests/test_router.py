"""The router in front of two released versions' real servers: each trip to the version
serving its cluster, upstream calls shared, shadow answers recorded."""

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
from served import HTTP, TRIP, Servers, cluster_trips, start_router

from {{ cookiecutter.package }}.artifacts import prediction_runs, traffic
from {{ cookiecutter.package }}.artifacts.predictions import ParquetPredictions
from {{ cookiecutter.package }}.artifacts.store import open_store
from {{ cookiecutter.package }}.artifacts.traffic import Assignment
from {{ cookiecutter.package }}.serving import router
from {{ cookiecutter.package }}.serving.limits import MAX_TRIPS
from {{ cookiecutter.package }}.serving.shadow import Shadow


def test_concurrent_requests_through_the_router_share_upstream_calls(
    released_root: Path, servers: dict[str, str], running: Servers
) -> None:
    store = open_store(str(released_root))
    traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, [*servers], "A/B")
    url = start_router(released_root, servers, running) + "/predict"
    bodies = [
        {
            "trips": [
                {**trip, "trip_id": f"r{i}-{trip['trip_id']}", "distance_km": 1.0 + i}
                for trip in cluster_trips([i % 8, (i + 3) % 8])
            ]
        }
        for i in range(48)
    ]
    with httpx.Client() as client:
        expected = [client.post(url, json=body).json() for body in bodies]
    coalescer = running.apps["router"].state.coalesce
    calls = coalescer.calls
    forward = coalescer.forward

    async def across_the_network(version: str, body: bytes) -> list[dict[str, Any]]:
        # A call to another pod takes milliseconds. Here the servers answer on loopback in
        # this process, at times before the router has read the next request, and then
        # nothing gathers (a run saw 84 calls for 84 version-requests): the coalescing this
        # test shows needs a call to last, as it does across pods.
        await asyncio.sleep(0.02)
        return await forward(version, body)

    coalescer.forward = across_the_network

    async def at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=48)) as client:
            return await asyncio.gather(*(client.post(url, json=body) for body in bodies))

    answers = asyncio.run(at_once())
    assert [a.json() for a in answers] == expected  # each its own trips, from their owners
    # One by one, a request costs a call per version it needs; together, the 48 requests'
    # trips went in fewer calls than requests.
    assert calls == sum(len(e["versions"]) for e in expected) > 48
    assert coalescer.calls - calls < calls


def test_the_coalescer_sends_what_gathered_while_a_call_was_in_flight() -> None:
    """The coalescing rule on its own, with an upstream that answers after 20 ms (the real
    servers are in the test above): the first request goes out alone, the 30 that arrive
    while it is in flight go out together, each caller gets its own trips' answers, a
    failed call fails only the requests it carried, and no call carries over MAX_TRIPS."""
    calls: list[list[int]] = []

    async def upstream(version: str, body: bytes) -> list[dict]:
        trips = orjson.loads(body)["trips"]
        calls.append([t["n"] for t in trips])
        await asyncio.sleep(0.02)
        if any(t["n"] < 0 for t in trips):
            raise router.Unavailable(version, "down")
        return [{"eta": t["n"] * 10} for t in trips]

    async def scenario() -> list:
        coalesce = router.Coalescer(upstream, max_wait_ms=50)
        first = asyncio.create_task(coalesce("1.0.0", [{"n": 0}]))
        await asyncio.sleep(0.001)  # the first call is in flight now
        rest = [coalesce("1.0.0", [{"n": i}, {"n": i + 100}]) for i in range(1, 31)]
        answers = [await first, *await asyncio.gather(*rest)]
        failing = await asyncio.gather(coalesce("2.0.0", [{"n": -1}]), return_exceptions=True)
        big = await asyncio.gather(*(coalesce("3.0.0", [{"n": 1}] * 600) for _ in range(3)))
        return [answers, failing, [len(b) for b in big]]

    answers, failing, big = asyncio.run(scenario())
    assert calls[0] == [0] and sorted(calls[1]) == sorted([*range(1, 31), *range(101, 131)])
    assert answers[0] == [{"eta": 0}]
    assert answers[1:] == [[{"eta": i * 10}, {"eta": (i + 100) * 10}] for i in range(1, 31)]
    assert isinstance(failing[0], router.Unavailable)
    assert big == [600] * 3 and all(len(c) <= 1000 for c in calls)


def test_the_shadow_mirror_sends_no_call_over_a_servers_limit(tmp_path: Path) -> None:
    """Two answered requests of 900 trips gathered in one batch: their shadow predictions
    go out in calls of at most MAX_TRIPS (a server refuses more), and all are recorded."""
    calls: list[int] = []

    async def upstream(version: str, trips: list[dict]) -> list[dict]:
        calls.append(len(trips))
        return [{"eta_minutes": 1.0} for _ in trips]

    sink = ParquetPredictions(str(tmp_path))
    assignment = Assignment({"1.0.0": list(range(8))}, 8)

    async def scenario() -> None:
        mirror = Shadow(sink, upstream, ["2.0.0"], flush_s=60)
        await mirror.start()
        for request in range(2):
            trips = [{"trip_id": f"r{request}-{i}", "user_cluster": i % 8} for i in range(900)]
            answers = [{"eta_minutes": 2.0, "version": "1.0.0"} for _ in trips]
            mirror.offer(orjson.dumps({"trips": trips}), answers, assignment)
        while mirror.stats.mirrored < 2 or mirror.queue.qsize():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await mirror.stop()  # writes what it kept

    asyncio.run(scenario())
    assert sorted(calls) == [MAX_TRIPS - 200, MAX_TRIPS]
    shadow_rows = sink.read("2.0.0", shadow=True)
    assert len(shadow_rows) == 1800 and not shadow_rows.served.any()
    assert len(sink.read("1.0.0")) == 1800


class SlowSink(ParquetPredictions):
    """The real Parquet sink, with a write that takes a while (a busy disk or bucket)."""

    def __init__(self, released_root: str) -> None:
        super().__init__(released_root)
        self.started = threading.Event()

    def write(self, *args: Any, **kwargs: Any) -> str:
        self.started.set()
        time.sleep(0.5)
        return super().write(*args, **kwargs)


def test_stopping_the_shadow_mirror_waits_for_a_write_in_flight(tmp_path: Path) -> None:
    """Rows the flusher took are written before stop() returns, though its task is
    cancelled mid-write: the router's shutdown is when what is left gets written."""
    sink = SlowSink(str(tmp_path))

    async def upstream(version: str, trips: list[dict]) -> list[dict]:
        return [{"eta_minutes": 1.0} for _ in trips]

    async def scenario() -> None:
        mirror = Shadow(sink, upstream, flush_s=0.05)
        await mirror.start()
        trips = [{"trip_id": f"t{i}", "user_cluster": 0} for i in range(3)]
        answers = [{"eta_minutes": 2.0, "version": "1.0.0"} for _ in trips]
        mirror.offer(orjson.dumps({"trips": trips}), answers, Assignment({"1.0.0": [0]}, 1))
        while not sink.started.is_set():  # the flusher took the rows and is writing
            await asyncio.sleep(0.01)
        await mirror.stop()
        # here, not after asyncio.run(), whose end waits for every thread
        assert list(sink.read("1.0.0").trip_id) == ["t0", "t1", "t2"]

    asyncio.run(scenario())


def test_the_router_records_shadow_answers_and_serves_without_the_shadow_version(
    released_root: Path, servers: dict[str, str], running: Servers
) -> None:
    store, sink = open_store(str(released_root)), ParquetPredictions(str(released_root))
    traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, ["1.0.0", "2.0.0"], "A/B")
    url = start_router(released_root, servers, running, shadow_sink=sink, shadow_flush_s=0.2)
    first = HTTP.post(f"{url}/predict", json={"trips": cluster_trips(range(8))}).json()

    def recorded(version: str) -> pd.DataFrame:
        return sink.read(version, shadow=True).set_index("trip_id")

    deadline = time.monotonic() + 20
    while not all(len(recorded(v)) == 8 for v in ("1.0.0", "2.0.0")):
        assert time.monotonic() < deadline, "the shadow answers were never recorded"
        time.sleep(0.1)
    for version, own in (("1.0.0", range(4)), ("2.0.0", range(4, 8))):
        rows = recorded(version)
        assert dict(rows["served"]) == {f"t{c}": c in own for c in range(8)}
        direct = HTTP.post(
            f"{servers[version]}/v{version}/predict", json={"trips": cluster_trips(range(8))}
        ).json()["predictions"]
        assert list(rows["eta_minutes"]) == [p["eta_minutes"] for p in direct]
    # Readers of what users were given see only the served rows.
    assert list(sink.read("1.0.0").trip_id) == [f"t{c}" for c in range(4)]
    # Beside each version's online predictions, what it was asked: its drift summary.
    for version in ("1.0.0", "2.0.0"):
        online = [r for r in prediction_runs.read(store, version) if r.get("source") == "online"]
        assert sum(r["inputs"]["n"] for r in online) == 8
        hours = {}
        for record in online:
            for hour, count in record["inputs"]["categorical"]["pickup_hour"].items():
                hours[hour] = hours.get(hour, 0) + count
        assert hours == {str(TRIP["pickup_hour"]): 8}

    # The shadow version down: the served answer is the same, and nothing waits for it.
    running.stop("2.0.0")
    trips = [{**trip, "trip_id": f"again-{trip['trip_id']}"} for trip in cluster_trips(range(4))]
    again = HTTP.post(f"{url}/predict", json={"trips": trips})
    assert again.status_code == 200
    etas = [p["eta_minutes"] for p in again.json()["predictions"]]
    assert etas == [p["eta_minutes"] for p in first["predictions"][:4]]
    shadow = running.apps["router"].state.shadow
    deadline = time.monotonic() + 20
    while shadow.stats.failed < 1:
        assert time.monotonic() < deadline, "the failed shadow call was never counted"
        time.sleep(0.1)
    running.stop("router")  # its shutdown writes what is left
    assert set(recorded("1.0.0").index) >= {f"again-t{c}" for c in range(4)}
    assert not any(t.startswith("again-") for t in recorded("2.0.0").index)


def test_the_router_sends_each_trip_to_the_version_serving_its_cluster(
    released_root: Path, servers: dict[str, str], running: Servers
) -> None:
    store = open_store(str(released_root))
    live = ["1.0.0", "2.0.0"]
    url = start_router(released_root, servers, running)
    unassigned = HTTP.post(f"{url}/predict", json={"trips": cluster_trips([0])})
    assert unassigned.status_code == 503
    assert "no traffic assignment yet" in unassigned.json()["detail"]
    index = HTTP.get(f"{url}/").json()  # the router lists its endpoints as servers do
    assert {(e["method"], e["path"]) for e in index["endpoints"]} >= {
        ("POST", "/predict"),
        ("GET", "/traffic"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),  # issue 52: operators look for it here
    }

    traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, live, "A/B")
    body = HTTP.post(f"{url}/predict", json={"trips": cluster_trips(range(8))}).json()
    assert [p["version"] for p in body["predictions"]] == ["1.0.0"] * 4 + ["2.0.0"] * 4
    assert [p["trip_id"] for p in body["predictions"]] == [f"t{c}" for c in range(8)]
    for cluster in (1, 6):  # the router's answer is the owning version's own answer
        owner = "1.0.0" if cluster < 4 else "2.0.0"
        direct = HTTP.post(
            f"{servers[owner]}/v{owner}/predict", json={"trips": cluster_trips([cluster])}
        ).json()["predictions"][0]
        assert body["predictions"][cluster]["eta_minutes"] == direct["eta_minutes"]

    # Moving traffic takes effect without restarting any server.
    traffic.record(store, {"2.0.0": range(8)}, 8, live, "blue/green")
    body = HTTP.post(f"{url}/predict", json={"trips": cluster_trips(range(8))}).json()
    assert {p["version"] for p in body["predictions"]} == {"2.0.0"}

    # The caller's errors: a trip without a cluster, or with one that does not exist, is
    # 422 naming the field, never routed to a guessed version.
    for trip, message in (
        (TRIP, "Field required"),
        ({**TRIP, "user_cluster": 8}, "user cluster 8 does not exist: clusters are 0-7"),
        ({**TRIP, "user_cluster": -1}, "greater than or equal to 0"),
    ):
        bad = HTTP.post(f"{url}/predict", json={"trips": [*cluster_trips([0]), trip]})
        assert bad.status_code == 422, bad.text
        (detail,) = bad.json()["detail"]
        # located as the version server and FastAPI locate a body's fields
        assert detail["loc"] == ["body", "trips", 1, "user_cluster"] and message in detail["msg"]

    # A request is answered whole or not at all: a trip whose version is down makes the
    # request 503 naming that version and its clusters, with no host name or exception;
    # other versions' clusters are answered as before.
    traffic.record(store, {"1.0.0": [0], "2.0.0": range(1, 8)}, 8, live, "canary")
    running.stop("1.0.0")
    down = HTTP.post(f"{url}/predict", json={"trips": cluster_trips([0, 3])})
    detail = down.json()["detail"]
    assert down.status_code == 503 and detail.startswith("version 1.0.0 (user clusters 0) unavail")
    assert "127.0.0.1" not in detail and "Error" not in detail and "2.0.0" not in detail
    up = HTTP.post(f"{url}/predict", json={"trips": cluster_trips([3])})
    assert up.status_code == 200 and up.json()["versions"] == ["2.0.0"]
