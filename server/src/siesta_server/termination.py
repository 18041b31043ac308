"""The server's last words: one line saying why it exited, where Kubernetes looks for it.

A kubelet mounts an empty file at the container's `terminationMessagePath` (default
`/dev/termination-log`) and copies what the process wrote there into the pod's
`lastState.terminated.message` (at most 4096 bytes), where the operator picks it up. The
server writes there only when asked (`--termination-log`) or when the file exists, so a
server run by hand never creates files in /dev.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_PATH = Path("/dev/termination-log")
# Kubernetes keeps 4096 bytes; one readable line is far shorter.
MAX_MESSAGE_CHARS = 1024


def one_line(message: str) -> str:
    """The message as one line of at most MAX_MESSAGE_CHARS characters."""
    text = " ".join(message.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def termination_log(configured: Path | None) -> Path | None:
    """Where to write the cause: the configured file, else the kubelet's if it exists."""
    if configured is not None:
        return configured
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def write_cause(path: Path | None, message: str) -> None:
    """Write the cause of a fatal exit (never raises: the exit itself must still happen)."""
    if path is None:
        return
    try:
        path.write_text(one_line(message) + "\n", encoding="utf-8")
    except OSError as error:
        log.warning("cannot write the termination message to %s: %s", path, error)
