"""A model's results shaped into a prediction response."""

from __future__ import annotations

from typing import Any

import numpy as np

from wharf.errors import InvalidInput


def jsonable(values: np.ndarray) -> Any:
    """Numeric arrays stay arrays (orjson writes them natively); labels become lists."""
    if values.dtype.kind in "fiub":
        return np.ascontiguousarray(values)
    return values.tolist()


def asks_probabilities(body: Any) -> bool:
    """Whether a body's ``"return"`` (already checked by the decoder) asks for probabilities."""
    wanted = body.get("return") if isinstance(body, dict) else None
    return wanted == "probabilities" or (isinstance(wanted, list) and "probabilities" in wanted)


def finite(values: np.ndarray) -> np.ndarray:
    """``values``, unless a float result is NaN or infinite: then the input was out of range.

    :raises InvalidInput: naming the first row with a non-finite result.
    """
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))[0])
        raise InvalidInput(
            f"The model's result for row {row} is not a finite number; an input value of that row "
            "is probably out of the range the model can take.",
            row=row,
        )
    return values
