"""One harness process under a backend, seen from the caller: start it, hand it jobs, read its results,
and kill it (with its whole sandbox) when it fails or overruns. Every wait has a deadline.

The harness's stdin, stdout and stderr are sockets, not pipes: where programs share our uid (the `userns`
backend in the verify pod), a pipe of ours could be reopened through /proc/<pid>/fd and carry forged results;
a socket cannot be reopened."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import time

from tpt_stages.sandbox.backends import HARNESS_ENV, harness_command

# runsc takes ~0.2 s to start on an idle machine; allow for a loaded one.
START_SECONDS = 60.0
CLOSE_SECONDS = 10.0
_STDERR_KEEP = 4096


class HarnessFailed(RuntimeError):
    """The harness died, hung or spoke nonsense: the job in hand gets infra_error."""


class Session:
    def __init__(self, backend: str, limits: dict) -> None:
        ours, theirs = zip(*(socket.socketpair() for _ in range(3)), strict=True)
        try:
            self.proc = subprocess.Popen(
                harness_command(backend, limits),
                stdin=theirs[0].fileno(),
                stdout=theirs[1].fileno(),
                stderr=theirs[2].fileno(),
                env=HARNESS_ENV,
                start_new_session=True,  # one killpg takes runsc or bwrap and everything under it
            )
        except OSError:
            for s in ours:
                s.close()
            raise
        finally:
            for s in theirs:
                s.close()
        self.stdin, self.stdout, self.stderr = ours
        for s in ours:
            s.setblocking(False)
        self._lines = bytearray()
        self._stderr_tail = bytearray()
        try:
            ready = self._exchange(b"", time.monotonic() + START_SECONDS)
        except HarnessFailed:
            self.kill()
            raise
        if not ready.get("ready"):
            self.kill()
            raise HarnessFailed(f"the harness did not start: {ready}")

    def run(self, job: dict, seconds: float) -> dict:
        """Send one job and return its result line; raises HarnessFailed (and kills the harness) on a crash
        or when no result arrives within `seconds`."""
        try:
            return self._exchange(json.dumps(job).encode() + b"\n", time.monotonic() + seconds)
        except HarnessFailed:
            self.kill()
            raise

    def close(self) -> None:
        """EOF on stdin ends the harness; kill it if it does not end by itself."""
        try:
            self.stdin.close()
            self.proc.wait(CLOSE_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        self.stdout.close()
        self.stderr.close()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def _exchange(self, data: bytes, deadline: float) -> dict:
        """Write `data` to the harness while reading its stdout until one full line has arrived."""
        pending = memoryview(data)
        with selectors.DefaultSelector() as sel:
            sel.register(self.stdout, selectors.EVENT_READ)
            sel.register(self.stderr, selectors.EVENT_READ)
            if pending:
                sel.register(self.stdin, selectors.EVENT_WRITE)
            while b"\n" not in self._lines:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HarnessFailed(f"no answer from the harness in time; stderr: {self._tail()}")
                for key, _ in sel.select(remaining):
                    if key.fileobj is self.stdin:
                        try:
                            n = os.write(self.stdin.fileno(), pending[: 1 << 16])
                        except BlockingIOError:
                            continue
                        except (BrokenPipeError, ConnectionResetError):
                            raise HarnessFailed(f"the harness died; stderr: {self._tail()}") from None
                        pending = pending[n:]
                        if not pending:
                            sel.unregister(self.stdin)
                        continue
                    try:
                        chunk = os.read(key.fd, 1 << 16)
                    except ConnectionResetError:
                        chunk = b""
                    if key.fileobj is self.stderr:
                        self._stderr_tail += chunk
                        del self._stderr_tail[:-_STDERR_KEEP]
                    elif chunk:
                        self._lines += chunk
                    if not chunk:
                        raise HarnessFailed(f"the harness died; stderr: {self._tail()}")
        line, _, rest = self._lines.partition(b"\n")
        self._lines = bytearray(rest)
        try:
            return json.loads(line)
        except ValueError:
            raise HarnessFailed(f"the harness wrote {bytes(line[:200])!r}") from None

    def _tail(self) -> str:
        return self._stderr_tail.decode(errors="replace")[-1000:]
