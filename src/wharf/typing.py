"""Type aliases shared across wharf."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any] | list[Any] | str | int | float | bool | None
"""A value orjson reads or writes."""
