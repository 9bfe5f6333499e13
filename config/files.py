"""Files holding secrets are readable by their owner only (issue 10, finding 8).

The embedded secret key (``.secret_key``) and the SQLite database (sessions inside) used to be
created with the process umask, typically 0644: readable by every user of the machine.
They are now created 0600, atomically, and a file an older version left wider is tightened.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

PRIVATE = 0o600


def restrict(path: Path | str) -> None:
    """chmod 0600 a file of ours that others may read or write (no-op if missing)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, PRIVATE)


def create_private(path: Path | str, content: bytes = b"") -> bool:
    """Create ``path`` 0600 with ``content`` unless it exists; True if this call created it.

    Written to a private temporary file and linked into place, so a process starting at the
    same moment never reads a half-written file."""
    path = Path(path)
    if path.exists():
        return False
    # Unique per call: threads of one process may create the same file at the same moment.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(tmp, PRIVATE)  # O_CREAT's mode is masked by the umask; 0600 survives any umask
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def private_text(path: Path | str, make: Callable[[], str]) -> str:
    """The text of ``path``, creating it 0600 with ``make()`` first if it is missing."""
    if not create_private(path, make().encode()):
        restrict(path)
    return Path(path).read_text().strip()


_checked: set[str] = set()


def private_sqlite(name: str) -> None:
    """Before SQLite opens ``name``: create it 0600 if missing (SQLite gives its -wal and
    -shm files the database file's mode), or tighten it and its companions. Once per file
    per process while it exists (connections open per request)."""
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    if name in _checked and os.path.exists(name):
        return
    companions = [f"{name}{suffix}" for suffix in ("-wal", "-shm", "-journal")]
    if create_private(name):
        # Left by a deleted database of the same name (a killed test run): SQLite would
        # apply them to the new, empty file and fail with "disk I/O error".
        for path in companions:
            Path(path).unlink(missing_ok=True)
    else:
        for path in (name, *companions):
            restrict(path)
    _checked.add(name)
