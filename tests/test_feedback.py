"""``POST /feedback`` on telco churn: labels of served requests, sent over HTTP to a real
uvicorn server on 127.0.0.1, read back typed by ``read_labels`` (the latest label of a request
wins, from a file or the service); bad feedback is a 4xx naming the item and field with nothing
written; the OpenAPI document describes the route; a ``kill -9`` of ``shipyard serve`` keeps
every acknowledged item older than a flush and leaves no half file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import orjson
import pyarrow.parquet as pq
import pytest

from shipyard.monitoring.labels import ingest, read_labels
from shipyard.serving.app import build
from shipyard.serving.feedback import FeedbackLog, read_feedback
from support import CHILD_ENV, free_port, records_of, served_churn, uvicorn_app

FLUSH = 0.2
SERVING = {"log_flush_seconds": FLUSH, "max_problems": 5, "max_string_chars": 1000}


@pytest.fixture(scope="module")
def churn_served(tmp_path_factory, churn):
    """Telco churn with one bundle, champion as version 1 (classes No, Yes)."""
    folder = tmp_path_factory.mktemp("feedback")
    project = served_churn(folder, churn, project={"id": "rownames"}, serving=SERVING)
    records = records_of(churn.drop(columns=["churn"]).head(40))
    return {"spec": folder / "shipyard.toml", "project": project, "records": records}


@contextlib.contextmanager
def serving(churn_served):
    app, service = build(churn_served["spec"])
    try:
        with uvicorn_app(app) as (client, _):
            yield client, service
    finally:
        service.close()


def _feedback_rows(project) -> int:
    return read_feedback(project.workspace.feedback).num_rows


def _wait_for_rows(project, n: int, timeout: float = 10.0) -> None:
    """Wait until the feedback folder holds ``n`` rows (written by the log's own flush)."""
    deadline = time.monotonic() + timeout
    while _feedback_rows(project) < n:
        assert time.monotonic() < deadline, f"{_feedback_rows(project)} of {n} rows on disk"
        time.sleep(0.05)


def test_feedback_for_served_requests_is_read_back_typed_and_the_latest_wins(
    churn_served, tmp_path
):
    project = churn_served["project"]
    spec, workspace = project.spec, project.workspace
    with serving(churn_served) as (client, service):
        ids = []
        for record in churn_served["records"][:12]:
            answer = client.post("/predict", json=record)
            assert answer.status_code == 200
            ids.append(answer.json()["request_id"])
        service.flush()  # the predictions are on disk, so the file below matches them
        early = tmp_path / "early.csv"
        early.write_text(f"request_id,churn\n{ids[0]},Yes\n{ids[1]},Yes\n")
        assert ingest(early, spec, workspace).matched == 2

        before = _feedback_rows(project)
        spellings = ["no", "Yes", True, "yes", False, "No"]  # every boolean spelling is a class
        items = [
            {"request_id": rid, "label": spellings[i % len(spellings)]} for i, rid in enumerate(ids)
        ]
        items.append({"request_id": ids[3], "label": "YES"})  # the same label again
        items.append({"request_id": "not-logged-yet", "label": "No"})  # accepted, joins later
        answer = client.post("/feedback", json={"feedback": items})
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": 13, "duplicates": 1}
        _wait_for_rows(project, before + 13)
        assert service.metrics.value("shipyard_feedback_total") == 13

        late = tmp_path / "late.csv"  # a file ingested after the feedback replaces it
        late.write_text(f"request_id,churn\n{ids[1]},No\n")
        assert ingest(late, spec, workspace).replaced == 1

    got = read_labels(workspace).to_pandas().set_index("request_id")
    truth = {True: "Yes", False: "No"}
    for i, rid in enumerate(ids):
        spelled = spellings[i % len(spellings)]
        want = truth[spelled] if isinstance(spelled, bool) else spelled.capitalize()
        if i == 1:
            want, source = "No", "late.csv"
        else:
            source = "feedback"
        row = got.loc[rid]
        assert (row["label"], row["outcome"], row["source"]) == (
            want,
            1.0 if want == "Yes" else 0.0,
            source,
        ), rid
    assert got.loc[ids[0], "label"] == "No"  # the feedback came after the early file's "Yes"
    assert got.loc["not-logged-yet", ["label", "source"]].tolist() == ["No", "feedback"]
    assert got.loc[ids[0], "ingested_at"] < got.loc[ids[1], "ingested_at"]  # late.csv is later
    assert len(got) == len(ids) + 1  # one label per request


def _post(client, body: bytes, kind: str = "application/json"):
    return client.post("/feedback", content=body, headers={"content-type": kind})


def test_bad_feedback_is_a_4xx_naming_the_item_and_field_and_nothing_is_written(churn_served):
    project = churn_served["project"]
    ok = {"request_id": "r-ok", "label": "Yes"}
    with serving(churn_served) as (client, service):
        before = _feedback_rows(project)
        cases = [
            ({"request_id": "r1", "label": "Maybe"}, "label", "unknown_class", "Maybe"),
            ({"request_id": "r1", "label": None}, "label", "missing", "missing"),
            ({"request_id": "r1", "label": [1]}, "label", "wrong_type", "one of the classes"),
            ({"label": "Yes"}, "request_id", "missing", "request_id"),
            ({"request_id": 7, "label": "Yes"}, "request_id", "wrong_type", "got 7"),
            ({"request_id": "r1", "label": "Yes", "when": 1}, "when", "unknown_field", "when"),
            ({"request_id": "x" * 1001, "label": "No"}, "request_id", "too_long", "1,001"),
        ]
        for item, field, reason, text in cases:
            answer = client.post("/feedback", json={"feedback": [ok, item]})
            assert answer.status_code == 422, (item, answer.text)
            body = answer.json()
            assert body["details"][0]["record"] == 1 and body["details"][0]["field"] == field
            assert body["details"][0]["reason"] == reason and text in body["error"], body
        twice = [{"request_id": "r2", "label": "Yes"}, {"request_id": "r2", "label": "no"}]
        answer = client.post("/feedback", json={"feedback": twice})
        assert answer.status_code == 422 and "two different labels" in answer.json()["error"]

        many = [{"request_id": f"r{i}", "label": "Perhaps"} for i in range(12)]
        body = client.post("/feedback", json={"feedback": many}).json()
        assert len(body["details"]) == 5 and (body["problems"], body["not_shown"]) == (12, 7)
        assert "7 more not shown" in body["error"]

        for raw, kind, status in [
            (b"{not json", "application/json", 400),
            (b'{"feedback": []}', "application/json", 400),
            (b'[{"request_id": "r", "label": "Yes"}]', "application/json", 400),
            (b'{"feedback": [], "extra": 1}', "application/json", 400),
            (b"request_id=r", "application/x-www-form-urlencoded", 415),
            (b'{"feedback": [' + b"[" * 40 + b"]" * 40 + b"]}", "application/json", 400),
        ]:
            answer = _post(client, raw, kind)
            assert answer.status_code == status, (raw[:40], answer.text)
            assert answer.json()["error"]
        too_many = {"feedback": [ok] * 1001}  # [serving] max_records is 1000
        assert _post(client, orjson.dumps(too_many)).status_code == 413
        service.flush()
        assert service.metrics.value("shipyard_errors_total", endpoint="feedback", kind="feedback")
    assert _feedback_rows(project) == before  # a refused body writes nothing, not even "r-ok"


def test_the_openapi_document_describes_feedback_and_the_server_keeps_to_it(churn_served):
    import schemathesis

    from support import schemathesis_failures

    app, service = build(churn_served["spec"])
    try:
        operation = app.openapi()["paths"]["/feedback"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        item = body["properties"]["feedback"]["items"]
        assert item["required"] == ["request_id", "label"] and not item["additionalProperties"]
        assert item["properties"]["label"]["x-classes"] == ["No", "Yes"]
        assert {"202", "400", "413", "415", "422", "503"} <= set(operation["responses"])
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        failures = schemathesis_failures(schema, paths={"/feedback"}, max_examples=40)
    finally:
        service.close()
    assert not failures, "\n".join(failures[:5])


SHIPYARD_SERVE = [sys.executable, "-m", "shipyard", "serve"]
SENDER_WINDOW = FLUSH + 0.5  # an item acknowledged this long before the kill is on disk


def test_kill_9_after_202s_loses_at_most_the_unflushed_batch(churn_served):
    project = churn_served["project"]
    folder = project.workspace.feedback
    port = free_port()
    server = subprocess.Popen(
        [*SHIPYARD_SERVE, "--spec", str(churn_served["spec"]), "--port", str(port)],
        env=CHILD_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "shipyard serve did not become healthy"
            time.sleep(0.1)
        acked: list[tuple[float, list[str]]] = []
        stop = threading.Event()

        def send() -> None:
            with httpx.Client(base_url=url, timeout=5) as client:
                for i in range(100_000):
                    if stop.is_set():
                        return
                    ids = [f"kill-{i}-{j}" for j in range(5)]
                    items = [{"request_id": rid, "label": "Yes"} for rid in ids]
                    try:
                        answer = client.post("/feedback", json={"feedback": items})
                    except httpx.HTTPError:
                        return
                    if answer.status_code == 202:
                        acked.append((time.monotonic(), ids))

        thread = threading.Thread(target=send)
        thread.start()
        time.sleep(1.5)
        killed_at = time.monotonic()
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        stop.set()
        thread.join(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    due = {rid for at, ids in acked if at < killed_at - SENDER_WINDOW for rid in ids}
    assert len(due) > 50, "no item was old enough to be due on disk"
    for path in folder.rglob("part-*.parquet"):
        pq.read_table(path)  # every file left is whole
    on_disk = set(read_feedback(folder).column("request_id").to_pylist())
    sent = {rid for _, ids in acked for rid in ids}
    assert due <= on_disk, f"{len(due - on_disk)} of {len(due)} acknowledged items lost"
    assert {rid for rid in on_disk if rid.startswith("kill-")} - sent <= {
        f"kill-{len(acked)}-{j}" for j in range(5)
    }  # at most the request in flight at the kill, never anything half

    restarted = FeedbackLog(folder, flush_seconds=FLUSH)  # clears what a dead writer left
    restarted.append({"request_id": "after", "time": time.time(), "label": "No", "outcome": 0.0})
    restarted.close()
    assert not list(folder.rglob("*.tmp"))
    assert "after" in read_feedback(folder).column("request_id").to_pylist()
