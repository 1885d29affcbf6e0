"""What a request may cost the service, on telco churn: the `[serving]` limits (body, records,
nesting, text per field, problems named, answer size), the server's read timeouts and
connection limit (real uvicorn servers on 127.0.0.1, raw sockets), and a bounded fuzz of
every route with zero 5xx."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from shipyard.serving.app import build
from shipyard.serving.connection import CONNECTIONS, server_options
from support import (
    CHILD_ENV,
    free_port,
    records_of,
    running_server,
    schemathesis_failures,
    served_churn,
    uvicorn_app,
)

SERVING = {
    "max_problems": 5,
    "max_string_chars": 1000,
    "max_depth": 8,
    "header_timeout_seconds": 1.0,
    "body_timeout_seconds": 1.5,
    "idle_timeout_seconds": 1.0,
    "max_connections": 6,
    "log_flush_seconds": 0.2,
}


@pytest.fixture(scope="module")
def churn_served(tmp_path_factory, churn):
    """Telco churn with one bundle, champion as version 1, and test-sized limits."""
    folder = tmp_path_factory.mktemp("limits")
    project = served_churn(folder, churn, project={"id": "rownames"}, serving=SERVING)
    records = records_of(churn.drop(columns=["churn"]).head(50))
    return {"spec": folder / "shipyard.toml", "project": project, "records": records}


@contextlib.contextmanager
def serving(churn_served, **overrides):
    """The service on a real uvicorn server in this process, with the spec's connection
    settings (``overrides``: other ``[serving]`` values for this server)."""
    app, service = build(churn_served["spec"])
    policy = dataclasses.replace(service.router.policy, **overrides)
    try:
        with uvicorn_app(app, **server_options(policy)) as (client, port):
            yield client, service, port
    finally:
        service.router.close()
        if service.log is not None:
            service.log.close()


def _post(client, path: str, body: bytes, kind: str = "application/json"):
    return client.post(path, content=body, headers={"content-type": kind})


# --- request limits ---------------------------------------------------------------------


def test_many_unknown_fields_name_the_first_problems_and_count_the_rest(churn_served):
    records = churn_served["records"]
    junk = {f"j{j}": 0 for j in range(380)}
    body = orjson.dumps([{**r, **junk} for r in (records * 20)[:1000]])
    assert 3_000_000 < len(body) < 4 * 1024 * 1024  # the size of the attack, under the limit
    with serving(churn_served) as (client, service, _):
        answer = _post(client, "/predict", body)
        assert answer.status_code == 422
        doc = answer.json()
        assert doc["problems"] == 1000 * 380  # every unknown field counted ...
        assert len(doc["details"]) == 5  # ... the first max_problems named
        assert doc["not_shown"] == 1000 * 380 - 5 * 380
        first = doc["details"][0]
        assert (first["record"], first["field"], first["reason"]) == (0, "j0", "unknown_field")
        assert first["count"] == 380 and "'j0', 'j1'" in first["message"]
        assert len(answer.content) < 10_000
        assert service.metrics.value("shipyard_errors_total", endpoint="predict", kind="contract")
        # the same on MLflow's protocol
        split = {
            "columns": [*records[0], *junk],
            "data": [[*records[0].values(), *junk.values()]] * 3,
        }
        again = client.post("/invocations", json={"dataframe_split": split})
        assert again.status_code == 422 and again.json()["problems"] == 3 * 380


def test_a_huge_string_in_a_field_is_refused_naming_it_and_never_logged(churn_served):
    record = churn_served["records"][0]
    with serving(churn_served) as (client, service, _):
        written = service.log.written
        for field in ("contract", "tenure", "rownames"):  # category, number, the entity id
            answer = client.post("/predict", json={**record, field: "x" * 3_900_000})
            assert answer.status_code == 422, (field, answer.text[:200])
            (detail,) = answer.json()["details"]
            assert (detail["field"], detail["reason"]) == (field, "too_long")
            assert "3,900,000 characters" in detail["message"] and "1,000" in detail["message"]
            assert len(answer.content) < 2000
        at_limit = client.post("/predict", json={**record, "contract": "y" * 1000})
        assert at_limit.status_code == 200  # an unseen category, served with a warning
        assert at_limit.json()["warnings"] == ["contract: unseen_category"]
        service.flush()
        assert service.log.written == written + 1  # only the answered record
        name = churn_served["project"].spec.project.name
        oip = {"id": "z" * 2000, "inputs": [{"name": "tenure", "shape": [1], "datatype": "FP64"}]}
        oip["inputs"][0]["data"] = [3]
        refused = client.post(f"/v2/models/{name}/infer", json=oip)
        assert refused.status_code == 422 and "2,000 characters" in refused.json()["error"]


def test_nesting_past_max_depth_is_a_400_naming_where(churn_served):
    record = churn_served["records"][0]
    with serving(churn_served) as (client, _, _):
        for levels, status in ((5, 422), (7, 422), (8, 400), (1000, 400)):
            # the record is level 1 (level 2 inside a list), the field's value level 2 and on
            value = "[" * levels + "]" * levels
            text = orjson.dumps({**record, "contract": None}).decode()
            body = text.replace('"contract":null', f'"contract":{value}').encode()
            answer = _post(client, "/predict", body)
            assert answer.status_code == status, (levels, answer.text[:300])
            if status == 400:
                assert "deeper than 8 levels" in answer.json()["error"]
                assert "/contract/0/0" in answer.json()["error"]
            else:
                (detail,) = answer.json()["details"]
                assert (detail["field"], detail["reason"]) == ("contract", "wrong_type")
            listed = _post(client, "/invocations", b'{"dataframe_records": [' + body + b"]}")
            # two levels further down: {"dataframe_records": [record]}
            assert listed.status_code == (400 if levels >= 6 else 422), levels
        assert client.post("/predict", json=record).status_code == 200  # the connection serves


def test_body_size_record_count_and_answer_size(churn_served):
    records = churn_served["records"]
    name = churn_served["project"].spec.project.name
    with serving(churn_served) as (client, service, port):
        # Content-Length over the limit: 413 before a byte of the body is read
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000000\r\n\r\n"
            )
            head = raw.recv(4096)
            assert head.startswith(b"HTTP/1.1 413"), head[:100]
        too_many = (records * 21)[:1001]
        assert client.post("/predict", json=too_many).status_code == 413
        split = {"columns": list(records[0]), "data": [list(r.values()) for r in too_many]}
        answer = client.post("/invocations", json={"dataframe_split": split})
        assert answer.status_code == 413 and "1,001 records" in answer.json()["error"]
        header = ",".join(records[0])
        rows = "\n".join(",".join(str(v) for v in r.values()) for r in too_many)
        assert (
            _post(client, "/invocations", f"{header}\n{rows}".encode(), "text/csv").status_code
            == 413
        )
        oip = {
            "inputs": [{"name": "tenure", "shape": [1001], "datatype": "FP64", "data": [1] * 1001}]
        }
        assert client.post(f"/v2/models/{name}/infer", json=oip).status_code == 413
        # an answer larger than max_response_mb is refused, not sent
        ok = client.post("/predict", json=records)
        assert ok.status_code == 200
        service.limits = dataclasses.replace(service.limits, max_response_bytes=len(ok.content) - 1)
        big = client.post("/predict", json=records)
        assert big.status_code == 413 and "max_response_mb" in big.json()["error"]
        assert client.post("/predict", json=records[:5]).status_code == 200


# --- the server's connections -----------------------------------------------------------


def _closed_after(sock: socket.socket, limit: float = 15.0) -> tuple[bytes, float]:
    """What the server sent until it closed ``sock``, and how long that took."""
    start = time.monotonic()
    sock.settimeout(limit)
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received, time.monotonic() - start
        received += chunk


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def test_idle_and_half_sent_connections_are_closed_at_the_timeouts(churn_served):
    before = dict(CONNECTIONS.closed)
    with serving(churn_served) as (client, service, port):
        # a connection that sends nothing: closed at the header timeout (1 s)
        with _connect(port) as silent:
            received, took = _closed_after(silent)
            assert received == b"" and 0.5 < took < 10
        # half-sent headers, trickled: the deadline is not pushed back by each byte
        with _connect(port) as trickle:
            trickle.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
            start, closed = time.monotonic(), False
            while time.monotonic() - start < 10:
                try:
                    trickle.sendall(b"X")
                    if trickle.recv(1, socket.MSG_DONTWAIT) == b"":
                        closed = True
                        break
                except BlockingIOError:
                    pass
                except OSError:  # reset: closed
                    closed = True
                    break
                time.sleep(0.1)
            assert closed, "a trickled header was never cut off"
        # a kept-alive connection after its answer: closed at the idle timeout (1 s)
        with _connect(port) as kept:
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            received, took = _closed_after(kept)
            assert received.startswith(b"HTTP/1.1 200") and 0.5 < took < 10
        # half a body: answered 408 at the body timeout (1.5 s), closed, counted
        with _connect(port) as half:
            half.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n" + b'{"contract": "' + b"a" * 50_000
            )
            received, took = _closed_after(half)
            assert received.startswith(b"HTTP/1.1 408"), received[:100]
            assert b"body_timeout_seconds" in received and 1.0 < took < 10
        deadline = time.monotonic() + 10
        while (
            service.metrics.value("shipyard_errors_total", endpoint="predict", kind="body_timeout")
            < 1
        ):
            assert time.monotonic() < deadline, "the body timeout was not counted"
            time.sleep(0.05)
        assert (
            service.metrics.value("shipyard_errors_total", endpoint="predict", kind="internal") == 0
        )
        metrics = client.get("/metrics").text
        assert 'shipyard_connections_closed_total{reason="body_timeout"}' in metrics
    assert CONNECTIONS.closed["header_timeout"] - before.get("header_timeout", 0) >= 2
    assert CONNECTIONS.closed["body_timeout"] - before.get("body_timeout", 0) == 1


def test_connections_past_the_limit_are_refused_with_503(churn_served):
    # long read timeouts here, so that the connections held open stay open
    with serving(churn_served, header_timeout_seconds=60.0, idle_timeout_seconds=60.0) as (
        client,
        _,
        port,
    ):
        assert client.get("/health").status_code == 200  # the client's connection: 1 of 6
        held = [_connect(port) for _ in range(5)]  # 6 of 6
        try:
            time.sleep(0.2)  # accepted by the server
            with _connect(port) as extra:  # the 7th
                extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                received, _ = _closed_after(extra)
                assert received.startswith(b"HTTP/1.1 503"), received[:100]
            assert client.get("/health").status_code == 200  # those within it still served
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        with _connect(port) as again:  # room again once the held ones left
            again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            received, _ = _closed_after(again)
            assert received.startswith(b"HTTP/1.1 200"), received[:100]
        assert (
            'shipyard_connections_closed_total{reason="over_limit"}' in client.get("/metrics").text
        )


# --- `shipyard serve` itself: its timeouts, and its memory under two attackers -------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _expensive_bad_requests(records: list[dict]) -> list[tuple[str, bytes]]:
    """The costliest bad requests the hostile trial found, scaled to this spec's limits: 1,000
    records with 380 unknown fields (just under 4 MB), 3.9 MB of text in one field, 1,000
    records each nesting to just within ``max_depth`` (so every record is walked), and one
    value nested 1,000 deep."""
    junk = {f"j{j}": 0 for j in range(380)}
    within = "[" * (SERVING["max_depth"] - 3) + "1" + "]" * (SERVING["max_depth"] - 3)
    rows = ",".join(
        orjson.dumps({**r, "contract": None}).decode().replace('"contract":null', within)
        for r in (records * 20)[:1000]
    )
    deep = "[" * 1000 + "]" * 1000
    one = orjson.dumps({**records[0], "contract": None}).decode()
    return [
        ("/predict", orjson.dumps([{**r, **junk} for r in (records * 20)[:1000]])),
        ("/predict", orjson.dumps({**records[0], "contract": "x" * 3_900_000})),
        ("/invocations", f'{{"dataframe_records": [{rows}]}}'.encode()),
        ("/predict", one.replace('"contract":null', f'"contract":{deep}').encode()),
    ]


def test_shipyard_serve_applies_the_timeouts_and_stays_bounded_under_two_attackers(
    churn_served, tmp_path
):
    """The command a user runs (not the app in this process): its connections follow the
    spec's timeouts, and two clients sending the most expensive bad requests back to back
    get only 4xx while the server's memory stays bounded and /health keeps answering."""
    port = free_port()
    command = [sys.executable, "-m", "shipyard", "serve", "--spec", str(churn_served["spec"])]
    command += ["--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running_server(command, url + "/health", tmp_path / "serve.log", env=CHILD_ENV) as proc:
        with _connect(port) as silent:  # header_timeout_seconds = 1
            received, took = _closed_after(silent)
            assert received == b"" and 0.5 < took < 10
        with _connect(port) as half:  # body_timeout_seconds = 1.5: a 408
            half.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            received, _ = _closed_after(half)
            assert received.startswith(b"HTTP/1.1 408"), received[:100]

        import httpx

        attacks = _expensive_bad_requests(churn_served["records"])
        with httpx.Client(base_url=url, timeout=60) as warm:
            for path, body in attacks:  # once, so that the baseline holds what they load
                answer = warm.post(path, content=body, headers={"content-type": "application/json"})
                assert answer.status_code in (400, 413, 422), answer.text[:300]
        baseline = _rss_mb(proc.pid)
        peak, statuses, health = [baseline], [], []
        done = threading.Event()

        def attacker() -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                for _ in range(8):
                    for path, body in attacks:
                        answer = client.post(
                            path, content=body, headers={"content-type": "application/json"}
                        )
                        statuses.append(answer.status_code)

        def watch() -> None:
            with httpx.Client(base_url=url, timeout=60) as probe:
                while not done.is_set():
                    peak.append(_rss_mb(proc.pid))
                    health.append(probe.get("/health").status_code)
                    time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        threads = [threading.Thread(target=attacker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        watcher.join()
        assert len(statuses) == 2 * 8 * len(attacks)
        assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))
        assert health and set(health) == {200}
        # before the limits, two such clients took the server from ~250 MB to 819 MB
        assert max(peak) - baseline < 200, (baseline, max(peak))


# --- fuzz: zero 5xx on every route ----------------------------------------------------------


def _hostile_bodies(record: dict) -> list[tuple[bytes, str]]:
    deep = "[" * 1000 + "]" * 1000
    junk = {f"junk_{j}": "v" * 10 for j in range(2000)}
    return [
        (b"", "application/json"),
        (b"{", "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"NaN", "application/json"),
        (b'{"a": NaN}', "application/json"),
        (deep.encode(), "application/json"),
        (b'{"x": ' + deep.encode() + b"}", "application/json"),
        (b"[" + b"{}," * 200_000 + b"{}]", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b"null", "application/json"),
        (b'"text"', "application/json"),
        (b"12345678901234567890123456789", "application/json"),
        (orjson.dumps({**record, "contract": "x" * 2_000_000}), "application/json"),
        (orjson.dumps([{**record, **junk}] * 100), "application/json"),
        (orjson.dumps({k: [v] for k, v in record.items()}), "application/json"),
        (orjson.dumps({k: {"v": v} for k, v in record.items()}), "application/json"),
        (orjson.dumps({"dataframe_split": {"columns": [1, 2], "data": "x"}}), "application/json"),
        (orjson.dumps({"dataframe_records": [record, 5]}), "application/json"),
        (
            orjson.dumps({"inputs": [{"name": "x" * 5000, "shape": [1], "datatype": "FP64"}]}),
            "application/json",
        ),
        (
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "tenure",
                            "shape": list(range(50_000)),
                            "datatype": "FP64",
                            "data": [1],
                        }
                    ]
                }
            ),
            "application/json",
        ),
        (b"a,b\n" + b'"unclosed' * 1000, "text/csv"),
        (b"x" * (5 * 1024 * 1024), "application/json"),
        (b"tenure=1", "application/x-www-form-urlencoded"),
    ]


def test_fuzz_every_route_of_a_real_server_no_5xx(churn_served):
    import schemathesis

    record = churn_served["records"][0]
    name = churn_served["project"].spec.project.name
    with serving(churn_served) as (client, service, port):
        schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
        failures = schemathesis_failures(schema, max_examples=10)
        assert not failures, "\n".join(failures[:5])
        paths = {
            "/predict": "POST",
            "/invocations": "POST",
            "/feedback": "POST",
            f"/v2/models/{name}/infer": "POST",
            f"/v2/models/{name}/versions/1/infer": "POST",
            f"/v2/models/{name}/versions/99/infer": "POST",
            "/v2/models/other/infer": "POST",
            "/admin/reload": "POST",
            "/health": "GET",
            "/metrics": "GET",
            "/admin/state": "GET",
            f"/v2/models/{name}": "GET",
            "/v2/health/ready": "GET",
            "/nowhere": "POST",
        }
        statuses: dict[int, int] = {}
        for path, method in paths.items():
            for body, kind in _hostile_bodies(record):
                answer = client.request(method, path, content=body, headers={"content-type": kind})
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                assert answer.status_code < 500, (path, body[:60], answer.text[:300])
                assert len(answer.content) < 100_000, (path, body[:60])
        assert (
            service.metrics.value("shipyard_errors_total", endpoint="predict", kind="internal") == 0
        )
        assert sum(statuses.values()) == len(paths) * len(_hostile_bodies(record))
        assert client.post("/predict", json=record).status_code == 200
