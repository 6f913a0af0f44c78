"""Tiny real models of every format, trained once per session into a temporary folder.

Each :class:`Case` carries the file, its format, rows to send, and the in-process model's own
``predict`` / ``predict_proba`` on those rows, which HTTP answers must equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Case:
    name: str
    path: Path
    fmt: str
    rows: list[dict[str, Any]]
    """Rows keyed by column, as a client sends them."""
    expected: np.ndarray
    """The in-process model's predict() on ``rows``."""
    expected_proba: np.ndarray | None = None
    """The in-process model's predict_proba() on ``rows``, for classifiers."""
    signature: dict[str, Any] | None = None
    """An explicit signature to register with, where the file cannot say."""
    classes: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[Path], Case]
