"""Rows of numbers parsed straight from the request bytes into one float array, by simdjson.

orjson makes a Python float per value and numpy turns them back into doubles; for 1000 rows of
20 features that was two thirds of a request's time (bench/README.md). simdjson's ``as_buffer``
writes the numbers of a parsed list into one buffer of doubles, which numpy takes without a copy:
no Python object per value, nothing for the garbage collector.

Only the plain shape is taken here, ``{"instances": [[...], ...]}`` or ``{"inputs": [[...], ...]}``
and nothing else in the body. Anything else is declined (``None``), and the decoder's parsed path
takes it and says what is wrong, so the two paths answer alike (tests/services/test_decoding.py
holds them to the same array).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sized
from typing import cast

import numpy as np
import simdjson

PLAIN_KEYS = frozenset({"instances", "inputs"})
"""The one key of a plain body."""


class Parsers:
    """Idle simdjson parsers. A parser serves one document at a time and keeps its buffers, about
    2.3 times the largest document it has read, for the next. A few are kept, and only those that
    read bodies up to ``KEEP_BYTES``: one large request must not pin tens of MiB in every worker."""

    KEEP = 4
    KEEP_BYTES = 1 << 20

    def __init__(self) -> None:
        self._idle: deque[simdjson.Parser] = deque()  # append and pop are atomic

    def take(self) -> simdjson.Parser:
        try:
            return self._idle.pop()
        except IndexError:
            return simdjson.Parser()

    def give(self, parser: simdjson.Parser, size: int) -> None:
        """Keep ``parser``, which has just read ``size`` bytes, for the next body, or let it go."""
        if size <= self.KEEP_BYTES and len(self._idle) < self.KEEP:
            self._idle.append(parser)


_PARSERS = Parsers()


def plain_rows(data: bytes, width: int, max_rows: int) -> np.ndarray | None:
    """The ``(rows, width)`` float array of a plain body of 1 to ``max_rows`` rows of ``width``
    numbers, or ``None`` for any other body (another shape, another key, an option, a value that
    is not a number, a row of another length, invalid JSON)."""
    if not isinstance(data, bytes) or data.startswith(b"\xef\xbb\xbf"):  # orjson refuses a BOM
        return None
    # Rows as objects, columns and the MLflow shapes are parsed once, by the decoder, not twice:
    # a list of lists opens with "[" then "[".
    start = data.find(b"[")
    if start < 0 or data[start + 1 : start + 65].lstrip()[:1] != b"[":
        return None
    parser = _PARSERS.take()
    try:
        array = _parse(parser, data, width, max_rows)
    except Exception:
        # Whatever this path cannot take, the parsed path takes and explains. The parser is
        # dropped (a new one costs nothing), so no state of a failed parse reaches the next body.
        return None
    _PARSERS.give(parser, len(data))
    return array


def _parse(parser: simdjson.Parser, data: bytes, width: int, max_rows: int) -> np.ndarray | None:
    doc = parser.parse(data)
    if not isinstance(doc, simdjson.Object) or len(doc) != 1:
        return None
    (key,) = doc.keys()
    if key not in PLAIN_KEYS:
        return None
    rows = doc[key]
    if not isinstance(rows, simdjson.Array):
        return None
    n_rows = len(rows)
    if not 0 < n_rows <= max_rows:
        return None
    # A row that is a number has no len(): TypeError, so declined. Strings and objects have one,
    # and as_buffer refuses them below.
    if set(map(len, cast("Iterable[Sized]", rows))) != {width}:
        return None
    values = np.frombuffer(rows.as_buffer(of_type="d"), dtype=np.float64)
    # as_buffer flattens nested lists: a row with a list in it has more than one "[" of its own.
    # The body's only string is its one key, so every "[" in it opens a list.
    opened = np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == ord("["))
    if values.size != n_rows * width or opened != n_rows + 1:
        return None
    return values.reshape(n_rows, width)
