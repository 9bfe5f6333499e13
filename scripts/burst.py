"""A burst of N requests from one worker token against a running server; counts the answers.

    python scripts/burst.py http://127.0.0.1:8000 <token> 2000

16 requests in flight at a time (a thread pool of urllib requests). Used for the throttle
figures in docs/security.md ("Limits").
"""

import collections
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def one(url: str, token: str) -> tuple[int, str | None]:
    req = urllib.request.Request(
        url + "/api/knowledge/types", headers={"Authorization": f"Token {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Retry-After")


def main() -> None:
    url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: one(url, token), range(n)))
    counts = collections.Counter(status for status, _ in results)
    waits = sorted({int(w) for _, w in results if w})
    print(
        f"{n} requests in {time.monotonic() - start:.1f}s: {dict(counts)}; Retry-After: {waits[:1]}..{waits[-1:]}"
    )


if __name__ == "__main__":
    main()
