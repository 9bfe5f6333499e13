from conftest import issue_payload


def test_broadcast_then_query_shows_item_with_freshness(analysis):
    r = analysis.broadcast("issue_pattern", issue_payload())
    assert r.status_code == 201, r.json()
    q = analysis.client.get("/api/knowledge/query", {"types": "issue_pattern"})
    assert q.status_code == 200
    [item] = q.json()["results"]
    assert item["source"] == "analysis" and item["freshness"] > 0.99
