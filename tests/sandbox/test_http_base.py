"""The shared sandbox HTTP base: routing, recording, faults, control API."""

import httpx
import pytest

from sandbox.http import Request, Response, SandboxServer


class EchoServer(SandboxServer):
    name = "echo"

    def setup_routes(self) -> None:
        self.created = 0
        self.route("POST", "/items/{item}", self._create)

    def _create(self, req: Request) -> Response:
        self.created += 1
        return Response(201, {"item": req.params["item"], "body": req.json()})


@pytest.fixture
def echo():
    with EchoServer() as server:
        yield server


def test_routes_record_and_answer(echo: EchoServer) -> None:
    r = httpx.post(f"{echo.url}/items/a1?x=1", json={"k": "v"}, headers={"X-T": "t"})
    assert r.status_code == 201
    assert r.json() == {"item": "a1", "body": {"k": "v"}}
    [req] = echo.received("POST", "/items/.*")
    assert req.query == {"x": ["1"]}
    assert req.headers["x-t"] == "t"
    assert req.json() == {"k": "v"}
    assert httpx.get(f"{echo.url}/nope").status_code == 404
    assert httpx.get(f"{echo.url}/items/a1").status_code == 405


def test_fault_respond_then_clears(echo: EchoServer) -> None:
    httpx.post(f"{echo.url}/_control/faults", json={"path": "/items/.*", "status": 503, "times": 1})
    assert httpx.post(f"{echo.url}/items/a", json={}).status_code == 503
    assert httpx.post(f"{echo.url}/items/a", json={}).status_code == 201
    assert echo.created == 1
    recorded = httpx.get(f"{echo.url}/_control/requests").json()
    assert [r["path"] for r in recorded] == ["/items/a", "/items/a"]


def test_drop_after_runs_handler_but_never_answers(echo: EchoServer) -> None:
    echo.inject(path="/items/.*", mode="drop_after")
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{echo.url}/items/a", json={})
    assert echo.created == 1


def test_drop_before_handler(echo: EchoServer) -> None:
    echo.inject(path="/items/.*", mode="drop")
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{echo.url}/items/a", json={})
    assert echo.created == 0
