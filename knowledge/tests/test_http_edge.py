"""Issue 10, finding 7, at the real server (daphne): a static path that climbs out of the
static directories used to answer an HTML 500, and a 100 KB URL used to get its connection
dropped with no answer. Raw sockets, so nothing between the test and daphne rewrites the
request."""

from __future__ import annotations

import json
import socket

import pytest

from knowledge.tests.daphne_server import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(transactional_db):
    daphne = DaphneServer().start()
    yield daphne
    daphne.stop()


def raw_get(port: int, target: str, timeout: float = 10) -> bytes:
    """Send one GET with ``target`` verbatim; everything the server answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def test_static_paths_outside_the_static_roots_are_4xx_and_files_still_served(server):
    for target in (
        "/static/../x",
        "/static/..%2fx",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/../../etc/passwd",
    ):
        answer = raw_get(server.port, target)
        assert 400 <= status_of(answer) < 500, (target, answer[:300])
        assert b"root:" not in answer
    assert status_of(raw_get(server.port, "/static/js/knowledge-socket.js")) == 200


def test_a_100_kb_url_gets_414_with_a_json_body(server):
    answer = raw_get(server.port, "/api/knowledge/health?x=" + "a" * 100_000)
    assert status_of(answer) == 414, answer[:300]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert set(body) == {"detail", "errors"}


def test_a_url_under_daphnes_line_limit_but_over_the_setting_gets_414_from_django(server):
    answer = raw_get(server.port, "/api/knowledge/health?x=" + "a" * 12_000)
    assert status_of(answer) == 414, answer[:300]
    assert b"the limit is 8192" in answer


def test_an_oversized_header_line_gets_431(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /api/knowledge/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
            + b"a" * 20_000
            + b"\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert status_of(data) == 431, data[:300]
