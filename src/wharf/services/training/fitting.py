"""Running an estimator's ``fit``: warnings recorded, a library's exception turned into a wharf error.

A fit can fail on a value scikit-learn (or xgboost, lightgbm) only checks at fit time, or on the
data; either way the job fails with the library's own message, never a bare traceback.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from wharf.errors import InvalidInput, ModelError, WharfError

MAX_WARNINGS = 20
MAX_MESSAGE = 1000
"""Characters of a library's exception message kept in the error's detail."""


class CallerError(Exception):
    """An exception raised by the caller's own callback (progress), carried through untouched."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


@contextmanager
def fitting(algorithm: str, has_params: bool, caught: list[str]) -> Iterator[None]:
    """Record warnings into ``caught`` (deduplicated, at most 20), and convert exceptions.

    :param has_params: the request gave params (or a search); the error then names ``params``.
    :raises InvalidInput: the estimator refused its params or the data.
    :raises ModelError: it ran out of memory.
    """
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        try:
            yield
        except (WharfError, CallerError):
            raise
        except MemoryError as exc:
            raise ModelError(
                f"Fitting {algorithm} ran out of memory; train on fewer rows or features (a lower "
                "preprocessing.text_max_features), or a lighter algorithm."
            ) from exc
        except Exception as exc:
            hint = "check its params" if has_params else "check the data, or choose another algorithm"
            message = str(exc)[:MAX_MESSAGE]
            raise InvalidInput(
                f"Fitting {algorithm} failed: {type(exc).__name__}: {message} ({hint}).",
                field="params" if has_params else None,
            ) from exc
        finally:
            for record in records:
                text = f"{record.category.__name__}: {record.message}"
                if text not in caught and len(caught) < MAX_WARNINGS:
                    caught.append(text)
