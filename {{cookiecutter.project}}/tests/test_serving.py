"""Two released versions served side by side by real uvicorn servers on loopback."""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.pipelines import steps
from {{ cookiecutter.package }}.serving.app import create_app

TRIP = {"trip_id": "t1", "distance_km": 5.0, "pickup_hour": 8, "weekday": 1, "area_cluster": 0}


def release_model(root: Path, version: str, model: dict, tmp_path: Path) -> ReleaseNames:
    names = ReleaseNames("taxi", version, version, str(root))
    steps.ensure_features(names, 600, 1, [7, 8, 9])
    model_path = tmp_path / f"model-{version}.pkl"
    metrics = steps.train_and_evaluate(names, model, 0.2, 1, str(model_path))
    steps.publish_model(
        names, str(model_path), metrics, "abc", {"features": {"rush_hours": [7, 8, 9]}}
    )
    return names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    root = tmp_path / "artifacts"
    versions = {
        "1.0.0": release_model(root, "1.0.0", {"_target_": "sklearn.linear_model.Ridge"}, tmp_path),
        "2.0.0": release_model(
            root,
            "2.0.0",
            {"_target_": "sklearn.ensemble.HistGradientBoostingRegressor", "max_iter": 50},
            tmp_path,
        ),
    }
    running, urls = [], {}
    for version, names in versions.items():
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(names), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        urls[version] = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    for url in urls.values():
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
    yield urls
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


def test_each_version_answers_at_its_own_endpoint(servers: dict[str, str]) -> None:
    answers = {}
    for version, url in servers.items():
        assert httpx.get(f"{url}/version").json()["version"] == version
        response = httpx.post(f"{url}/v{version}/predict", json={"trips": [TRIP]})
        assert response.status_code == 200
        body = response.json()
        assert body["version"] == version
        assert body["predictions"][0]["trip_id"] == "t1"
        answers[version] = body["predictions"][0]["eta_minutes"]
        other = "2.0.0" if version == "1.0.0" else "1.0.0"
        assert httpx.post(f"{url}/v{other}/predict", json={"trips": [TRIP]}).status_code == 404
    assert answers["1.0.0"] != answers["2.0.0"]  # two different models
    assert all(5 < eta < 60 for eta in answers.values())


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"trips": [{**TRIP, "pickup_hour": 24}]}, "pickup_hour"),
        ({"trips": [{**TRIP, "distance_km": -1}]}, "distance_km"),
        ({"trips": [{k: v for k, v in TRIP.items() if k != "weekday"}]}, "weekday"),
        ({"trips": [{**TRIP, "surge": 2}]}, "surge"),
        ({"trips": []}, "trips"),
        ({"rides": [TRIP]}, "trips"),
    ],
)
def test_bad_requests_get_422_naming_the_field(
    servers: dict[str, str], payload: dict, field: str
) -> None:
    response = httpx.post(f"{servers['1.0.0']}/v1.0.0/predict", json=payload)
    assert response.status_code == 422
    assert any(field in detail["loc"] for detail in response.json()["detail"])
