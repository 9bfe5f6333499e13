from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from identity.models import Worker

pytestmark = pytest.mark.django_db


def test_create_worker_prints_a_working_token(client):
    out = StringIO()
    call_command("create_worker", "scout", stdout=out)
    token = out.getvalue().strip()
    assert token.startswith("kx_")
    r = client.get("/api/workers/me", HTTP_AUTHORIZATION=f"Token {token}")
    assert r.status_code == 200 and r.json()["name"] == "scout"
    assert Worker.objects.get(name="scout").token_hash != token  # only the hash is stored


def test_create_worker_refuses_duplicates_and_bad_names():
    call_command("create_worker", "scout", stdout=StringIO())
    with pytest.raises(CommandError, match="exists"):
        call_command("create_worker", "scout", stdout=StringIO())
    with pytest.raises(CommandError, match="name"):
        call_command("create_worker", "Bad Name!", stdout=StringIO())


def test_rotate_invalidates_the_old_token(client):
    out = StringIO()
    call_command("create_worker", "scout", stdout=out)
    old = out.getvalue().strip()
    assert (
        client.get("/api/workers/me", HTTP_AUTHORIZATION=f"Token {old}").status_code == 200
    )  # now cached
    out = StringIO()
    call_command("create_worker", "scout", "--rotate", stdout=out)
    new = out.getvalue().strip()
    assert client.get("/api/workers/me", HTTP_AUTHORIZATION=f"Token {old}").status_code == 401
    assert client.get("/api/workers/me", HTTP_AUTHORIZATION=f"Token {new}").status_code == 200


def test_bootstrap_creates_builtin_workers_and_admin_once(tmp_path, client):
    creds = tmp_path / "creds.json"
    out = StringIO()
    call_command("bootstrap", credentials=str(creds), stdout=out)
    assert set(Worker.objects.values_list("name", flat=True)) == {
        "think",
        "learning",
        "analysis",
        "dream",
        "recall",
    }
    assert "admin account: admin / " in out.getvalue()
    saved = json.loads(creds.read_text())["workers"]
    assert (
        client.get("/api/workers/me", HTTP_AUTHORIZATION=f"Token {saved['think']}").json()["kind"]
        == "think"
    )
    assert oct(creds.stat().st_mode)[-3:] == "600"
    out2 = StringIO()
    call_command("bootstrap", credentials=str(creds), stdout=out2)
    assert "admin account" not in out2.getvalue()  # printed once
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    assert json.loads(creds.read_text())["workers"] == saved  # tokens stay valid


def test_deactivated_worker_is_refused_at_once_despite_the_token_cache(client):
    out = StringIO()
    call_command("create_worker", "scout", stdout=out)
    token = out.getvalue().strip()
    assert client.get("/api/workers/me", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    worker = Worker.objects.get(name="scout")
    worker.is_active = False
    worker.save()  # as the admin does
    assert client.get("/api/workers/me", HTTP_AUTHORIZATION=f"Token {token}").status_code == 401


def test_a_cached_token_costs_no_query(client, django_assert_num_queries):
    out = StringIO()
    call_command("create_worker", "scout", stdout=out)
    token = out.getvalue().strip()
    client.get("/api/workers/me", HTTP_AUTHORIZATION=f"Token {token}")
    with django_assert_num_queries(0):
        r = client.get("/api/workers/me", HTTP_AUTHORIZATION=f"Token {token}")
    assert r.json()["name"] == "scout"
