"""Log lines written to a file descriptor (stdout) in batches, by a background thread.

A ``write`` call per line costs a system call per request, and it lets the interpreter hand the
GIL to another thread on every request: under load that was a tenth of a small prediction's cost
(bench/README.md). :class:`LineWriter` keeps the lines and writes them about every
:data:`FLUSH_SECONDS` in writes of whole lines of at most ``PIPE_BUF`` bytes, so lines of several
worker processes sharing one pipe still never interleave.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

FLUSH_SECONDS = 0.05
"""How long a line may wait before it is written."""
MAX_WRITE = select.PIPE_BUF
"""Most bytes one write carries: a pipe write of at most PIPE_BUF bytes is never split (4096 on
Linux)."""
JOIN_SECONDS = 5.0
"""How long :meth:`LineWriter.close` waits for the writer thread's last write."""
MAX_PENDING = 20_000
"""Most lines kept while the descriptor does not take them (a blocked pipe); more are dropped."""


class LineWriter:
    """Lines (``bytes`` ending in a newline, each at most :data:`MAX_WRITE`) written to ``fd``.

    :param fd: where the lines go (1: stdout).
    :param flush_seconds: how long a line may wait; 0 writes each line at once.
    :param on_drop: called with the number of lines lost (the kept lines were full, or the
        descriptor failed), so that a metric can show it.
    """

    def __init__(
        self,
        fd: int = 1,
        flush_seconds: float = FLUSH_SECONDS,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.fd = fd
        self.flush_seconds = flush_seconds
        self.on_drop = on_drop
        self.dropped = 0
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def write(self, line: bytes) -> None:
        """Keep ``line`` for the next write (or write it now where ``flush_seconds`` is 0, or once
        the writer is closed)."""
        if self.flush_seconds <= 0 or self._closed:
            self._write([line])
            return
        with self._lock:
            full = len(self._lines) >= MAX_PENDING
            if full:
                self.dropped += 1
            else:
                self._lines.append(line)
                first = len(self._lines) == 1
        if full:
            self._lost(1)
            return
        if first:  # the writer sleeps until a line comes: wake it once per batch, not per line
            if self._pid != os.getpid():
                self._start()
            self._wake.set()

    def flush(self) -> None:
        """Write every line kept so far."""
        with self._lock:
            lines, self._lines = self._lines, []
        if lines:
            self._write(lines)

    def close(self) -> None:
        """Write what is kept, after the writer thread's last write; later lines go out at once."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join(JOIN_SECONDS)
        self.flush()

    def after_fork(self) -> None:
        """In a forked child: the parent's lines, lock and thread are the parent's."""
        self._lines = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = None
        self._thread = None
        self.dropped = 0

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()  # a forked worker starts its own writer
            self._thread = threading.Thread(target=self._run, name="wharf-log-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            time.sleep(self.flush_seconds)  # gather the lines of this while into a few writes
            self.flush()

    def _write(self, lines: list[bytes]) -> None:
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > MAX_WRITE:
                self._put(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._put(b"".join(chunk))

    def _put(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:  # stdout closed or gone: a lost log line must not fail anything
            lost = data.count(b"\n")
            with self._lock:
                self.dropped += lost
            self._lost(lost)

    def _lost(self, lines: int) -> None:
        if self.on_drop is not None:
            self.on_drop(lines)
