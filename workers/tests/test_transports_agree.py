"""Both transports of the SDK answer in the same shapes (issue 9): the built-in workers use
``workers.inprocess.InProcessTransport``, external workers ``kx_sdk.HttpTransport`` against a
real server; a worker must not be able to tell which one it has."""

from __future__ import annotations

import pytest

from conftest import Persona, issue_payload
from knowledge.tests.daphne_server import DaphneServer
from kx_sdk import HttpTransport, SDKError
from workers.inprocess import InProcessTransport

pytestmark = pytest.mark.django_db(transaction=True)


def shape(value):
    """The structure of a JSON value: keys and types, lists by their first element."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None:
        return None
    if isinstance(value, str):  # enum members are strs too; JSON has no enums
        return "str"
    return (
        "number"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else type(value).__name__
    )


def differences(a, b, path="") -> list[str]:
    """Where two shapes differ; ``None`` (JSON null) matches anything, as does an empty list."""
    if a is None or b is None or a == [] or b == []:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only one side" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        return differences(a[0], b[0], f"{path}[]")
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def session(transport, tag: str) -> dict:
    """The same calls, in the same order, through one transport."""
    out = {}
    body = {"knowledge_type": "issue_pattern", "confidence": 0.7}
    out["broadcast"] = transport.broadcast(
        {**body, "payload": issue_payload(location=f"{tag}.py::f")}
    )
    out["broadcast_many"] = transport.broadcast_many(
        [
            {**body, "payload": issue_payload(location=f"{tag}.py::g")},
            {**body, "payload": {"rule": "long_function"}},  # invalid: no location
        ]
    )
    out["query"] = transport.query({"types": ["issue_pattern"]})
    out["subscribe"] = transport.subscribe(types=["issue_pattern"])
    out["receive"] = transport.receive(limit=1)
    page = out["receive"]
    # the next page, acking the first in the same call
    out["receive_ack"] = transport.receive(limit=10, ack=page["ack"], epoch=page["epoch"])
    out["ack"] = transport.ack(out["receive_ack"]["ack"])
    try:  # a stale ack (behind the cursor) is refused the same way
        transport.receive(limit=10, ack=page["ack"], epoch=page["epoch"])
        out["stale_ack"] = {"refused": False}
    except SDKError as exc:
        out["stale_ack"] = {"refused": True, "status": exc.status, "field": exc.field}
    out["update_state"] = transport.update_state({"status": "running", "cycles": 1})
    first, second = out["broadcast"]["item"]["id"], out["broadcast_many"][0]["result"]["item"]["id"]
    out["flag_conflict"] = transport.flag_conflict([first, second], f"{tag}: they disagree")
    return out


def test_in_process_and_http_transports_answer_in_the_same_shapes():
    inproc_worker = Persona("twin-inproc", "analysis")
    http_worker = Persona("twin-http", "analysis")
    other = Persona("other", "think")
    for location in ("o.py::f", "o.py::g"):  # two pages of one for each twin
        other.broadcast("issue_pattern", issue_payload(location=location))
    server = DaphneServer().start()
    try:
        http = session(HttpTransport(server.url, http_worker.token, http_worker.name), "h")
    finally:
        server.stop()
    inproc = session(InProcessTransport(inproc_worker.worker), "i")
    problems = {call: differences(shape(inproc[call]), shape(http[call])) for call in inproc}
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}
    assert (
        inproc["stale_ack"] == http["stale_ack"] == {"refused": True, "status": 409, "field": "ack"}
    )
    for out in (inproc, http):  # the ack on read moved the cursor past the first page
        assert out["receive_ack"]["position"] == out["receive"]["ack"]
        assert out["ack"]["position"] == out["receive_ack"]["ack"]
