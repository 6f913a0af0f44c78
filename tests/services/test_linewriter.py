"""LineWriter: lines reach the descriptor whole, in writes of at most PIPE_BUF bytes, soon."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from wharf.services import linewriter
from wharf.services.linewriter import MAX_WRITE, LineWriter


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    os.set_blocking(read, False)
    yield read, write
    os.close(read)
    os.close(write)


def drain(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_lines_are_written_in_whole_line_writes_within_pipe_buf(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    read, write = pipe
    writes: list[bytes] = []
    writer = LineWriter(write, flush_seconds=60)
    real = writer._put

    def spy(data: bytes) -> None:
        writes.append(data)
        real(data)

    monkeypatch.setattr(writer, "_put", spy)
    lines = [f'{{"n": {i}, "pad": "{"x" * (i % 100)}"}}\n'.encode() for i in range(300)]
    for line in lines:
        writer.write(line)
    assert writes == []  # kept, not written per line
    writer.flush()
    assert b"".join(writes) == b"".join(lines)
    assert len(writes) < len(lines) / 10
    assert all(len(w) <= MAX_WRITE and w.endswith(b"\n") for w in writes)
    assert drain(read) == b"".join(lines)


def test_the_background_thread_writes_soon(pipe: tuple[int, int]) -> None:
    read, write = pipe
    writer = LineWriter(write, flush_seconds=0.01)
    writer.write(b"one\n")
    writer.write(b"two\n")
    deadline = time.monotonic() + 5
    got = b""
    while got != b"one\ntwo\n" and time.monotonic() < deadline:
        time.sleep(0.01)
        got += drain(read)
    assert got == b"one\ntwo\n"
    writer.write(b"three\n")  # the writer sleeps between batches and wakes for the next
    while not got.endswith(b"three\n") and time.monotonic() < deadline:
        time.sleep(0.01)
        got += drain(read)
    assert got == b"one\ntwo\nthree\n"
    writer.close()


def test_no_delay_writes_each_line_at_once(pipe: tuple[int, int]) -> None:
    read, write = pipe
    writer = LineWriter(write, flush_seconds=0)
    writer.write(b"now\n")
    assert drain(read) == b"now\n"


def test_a_blocked_descriptor_bounds_what_is_kept(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, write = pipe
    monkeypatch.setattr(linewriter, "MAX_PENDING", 10)
    told: list[int] = []
    writer = LineWriter(write, flush_seconds=60, on_drop=told.append)
    for _ in range(15):
        writer.write(b"x\n")
    assert writer.dropped == 5
    assert told == [1] * 5  # one call per line lost, for the metric
    writer.close()


def test_close_writes_what_is_kept_and_later_lines_at_once(pipe: tuple[int, int]) -> None:
    read, write = pipe
    writer = LineWriter(write, flush_seconds=60)  # the thread would wait a minute
    writer.write(b"kept\n")
    writer.close()
    assert drain(read) == b"kept\n"
    writer.write(b"late\n")
    assert drain(read) == b"late\n"


def test_many_threads_every_line_once(pipe: tuple[int, int]) -> None:
    read, write = pipe
    writer = LineWriter(write, flush_seconds=0.005)
    got = bytearray()

    def produce(n: int) -> None:
        for i in range(200):
            writer.write(f"{n}-{i}\n".encode())

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        got += drain(read)  # keep the pipe from filling
    writer.close()
    got += drain(read)
    lines = got.decode().splitlines()
    assert sorted(lines) == sorted(f"{n}-{i}" for n in range(8) for i in range(200))


def test_a_forked_child_starts_afresh(pipe: tuple[int, int]) -> None:
    _, write = pipe
    writer = LineWriter(write, flush_seconds=60)
    writer.write(b"parent's\n")
    writer.after_fork()  # what Services.after_fork does in a worker
    writer.write(b"child's\n")
    assert writer._lines == [b"child's\n"]
    assert writer._thread is not None and writer._thread.is_alive()
    writer.close()


def test_a_reader_gone_loses_lines_quietly() -> None:
    read, write = os.pipe()
    os.close(read)  # stdout's reader went away: writes fail with EPIPE
    try:
        told: list[int] = []
        writer = LineWriter(write, flush_seconds=60, on_drop=told.append)
        writer.write(b"lost\n")
        writer.write(b"lost too\n")
        writer.close()  # no exception: a lost log line fails nothing
        assert writer.dropped == 2
        assert told == [2]  # both lines went in one failed write
    finally:
        os.close(write)
