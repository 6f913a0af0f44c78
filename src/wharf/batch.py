"""The decoded rows of one request, in the form the runtimes take.

A batch holds either one homogeneous 2-D numeric array (the fast path: every column numeric) or one
1-D array per column (mixed types, strings). Runtimes ask for the form their model needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class Batch:
    """Rows decoded against a signature.

    :param names: column names in signature order.
    :param array: ``(n_rows, n_columns)`` numeric array, or None.
    :param columns: one 1-D array of length ``n_rows`` per column, or None.
    Exactly one of ``array`` and ``columns`` is given.
    """

    __slots__ = ("_array", "_columns", "n_rows", "names")

    def __init__(
        self,
        names: Sequence[str],
        *,
        array: np.ndarray | None = None,
        columns: Sequence[np.ndarray] | None = None,
    ) -> None:
        if (array is None) == (columns is None):
            raise ValueError("give exactly one of array and columns")
        self.names = list(names)
        self._array = array
        self._columns = None if columns is None else list(columns)
        self.n_rows = int(array.shape[0]) if array is not None else len(columns[0])  # type: ignore[index]

    def as_array(self, dtype: type | np.dtype | str = np.float64) -> np.ndarray:
        """All columns as one ``(n_rows, n_columns)`` array of ``dtype``."""
        if self._array is not None:
            return self._array if self._array.dtype == dtype else self._array.astype(dtype)
        assert self._columns is not None
        return np.column_stack(self._columns).astype(dtype, copy=False)

    def column(self, index: int) -> np.ndarray:
        """Column ``index`` as a 1-D array."""
        if self._array is not None:
            return self._array[:, index]
        assert self._columns is not None
        return self._columns[index]

    def as_frame(self) -> pd.DataFrame:
        """A pandas DataFrame with the signature's column names (for models fitted on frames)."""
        import pandas as pd

        if self._array is not None:
            return pd.DataFrame(self._array, columns=self.names, copy=False)
        assert self._columns is not None
        return pd.DataFrame(dict(zip(self.names, self._columns, strict=True)), copy=False)

    def take(self, rows: slice) -> Batch:
        """The rows ``rows`` of this batch, as a batch (views, not copies)."""
        if self._array is not None:
            return Batch(self.names, array=self._array[rows])
        assert self._columns is not None
        return Batch(self.names, columns=[column[rows] for column in self._columns])

    @classmethod
    def concat(cls, batches: Sequence[Batch]) -> Batch:
        """One batch holding the rows of ``batches`` in order (same signature)."""
        first = batches[0]
        if len(batches) == 1:
            return first
        if all(b._array is not None for b in batches):
            return cls(first.names, array=np.concatenate([b._array for b in batches]))
        columns = [np.concatenate([b.column(i) for b in batches]) for i in range(len(first.names))]
        return cls(first.names, columns=columns)
