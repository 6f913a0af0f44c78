"""The protocol every runtime implements, and helpers they share.

A runtime wraps one loaded model of one format. It never imports Flask or SQLAlchemy, and converts
its framework's exceptions into wharf errors at this boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from wharf.batch import Batch
from wharf.errors import InvalidInput, InvalidModel, ModelError, WharfError
from wharf.signature import Output, Signature

log = logging.getLogger("wharf.runtimes")


class Predictor(Protocol):
    """What predicts: a loaded runtime, or a wrapper around one (batching) keeping its protocol."""

    signature: Signature

    def predict(self, batch: Batch) -> np.ndarray:
        """Labels (classifiers) or values, shape ``(n_rows,)`` or ``(n_rows, n_outputs)``."""
        ...

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        """Class probabilities ``(n_rows, n_classes)`` in ``signature.output.classes`` order,
        or None when the model has none."""
        ...


@runtime_checkable
class Runtime(Predictor, Protocol):
    """One loaded model of one format.

    ``signature`` is the explicit one given at load, completed by what the model knows.
    ``made_with`` maps library names to the versions the artifact records it was made with, where
    the artifact records them.
    """

    format: ClassVar[str]
    framework: ClassVar[str]
    made_with: dict[str, str]

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        fmt: str,
        signature: Signature | None = None,
        trusted: tuple[str, ...] = (),
    ) -> Runtime:
        """Load the artifact at ``path``, a file of format ``fmt``.

        :raises InvalidModel: the file is not a model of this format.
        :raises UnsafeModel: the file holds types that are not trusted.
        :raises MissingDependency: the format's library is not installed.
        """
        ...


def complete(
    inferred: Signature | None, explicit: Signature | None, what: str, output: Output | None = None
) -> Signature:
    """The explicit signature where given, with class labels filled in from the model.

    :param output: what the model says about its output, for models that state their output but
        not their inputs (``inferred`` is None); default: ``inferred.output``.
    :raises InvalidModel: neither signature is available.
    :raises InvalidInput: the explicit signature has another number of inputs than the model.
    """
    if explicit is None:
        if inferred is None:
            raise InvalidModel(
                f"Cannot infer the input columns of this {what}; register it with an explicit "
                'signature, e.g. {"inputs": [{"name": "x0", "dtype": "float64"}, ...]}.'
            )
        return inferred
    if inferred is not None and len(explicit.inputs) != len(inferred.inputs):
        shown = ", ".join(repr(n) for n in inferred.names[:8])
        more = f", ... ({len(inferred.inputs)} in all)" if len(inferred.inputs) > 8 else ""
        raise InvalidInput(
            f"The signature names {len(explicit.inputs)} input columns, but this {what} takes "
            f"{len(inferred.inputs)} ({shown}{more}); give one column per model input, in order.",
            field="signature.inputs",
        )
    known = inferred.output if inferred is not None else output
    if known is not None and explicit.output.classes is None and known.classes:
        return Signature(inputs=explicit.inputs, output=Output(kind=known.kind, classes=known.classes))
    return explicit


def labels_from_proba(proba: np.ndarray, classes: list[Any] | None) -> np.ndarray:
    """The most probable class of each row, as labels where ``classes`` are known."""
    index = proba.argmax(axis=1)
    if classes is None:
        return index
    return np.asarray(classes)[index]


@contextmanager
def calling_model(name: str) -> Iterator[None]:
    """Convert a framework's exception raised by a predict call into a wharf error.

    Floating-point overflow inside the model is silenced here (numpy's error state is per thread):
    it shows as a non-finite result, which the inference service refuses naming the row.
    """
    try:
        with np.errstate(all="ignore"):
            yield
    except WharfError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidInput(f"The {name} model rejected the input: {exc}") from exc
    except Exception as exc:
        log.exception("the %s model failed", name)
        raise ModelError(f"The {name} model failed on this input; the server log says why.") from exc
