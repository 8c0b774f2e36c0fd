"""Writing files so that a reader never sees half of one.

Plans specs (read by the DAG processor), endpoint files, lab state and phase reports are
all read by other processes while they may be rewritten; each write goes to a temporary
file in the same folder, is flushed to disk and then renamed over the old one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> Path:
    """Write ``text`` to ``path`` atomically; ``mode`` sets the file's permissions
    (``mkstemp`` makes 0600, too narrow when another user reads the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
