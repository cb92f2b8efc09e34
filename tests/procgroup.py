"""Stopping a server the tests started in its own process group (`start_new_session=True`)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM the whole group (a server's own children included), SIGKILL it if it lingers past `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
