"""What a model takes and gives: input columns with dtypes, output kind and class labels.

A :class:`Signature` is stored with every version, drives request decoding, the example request,
and the OpenAPI description. Runtimes infer it from the model where the model knows it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DType = Literal["float64", "float32", "int64", "int32", "bool", "string"]
OutputKind = Literal["classification", "regression", "other"]

NUMERIC_DTYPES: frozenset[str] = frozenset({"float64", "float32", "int64", "int32", "bool"})


def dtype_from_numpy(kind: str, itemsize: int = 8) -> DType:
    """Map a numpy dtype ``kind`` character (and item size) to a signature dtype."""
    if kind == "f":
        return "float32" if itemsize == 4 else "float64"
    if kind in "iu":
        return "int32" if itemsize == 4 else "int64"
    if kind == "b":
        return "bool"
    return "string"


class Column(BaseModel):
    """One input column."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    dtype: DType = "float64"
    nullable: bool = False
    """Whether the model accepts a missing value (null, NaN, empty CSV cell) here."""
    categories: list[Any] | None = Field(None, exclude_if=lambda value: value is None)
    """Values the model was fitted on, for a categorical column (documentation and examples)."""

    @property
    def numeric(self) -> bool:
        return self.dtype in NUMERIC_DTYPES


class Output(BaseModel):
    """What ``predict`` returns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: OutputKind = "other"
    classes: list[Any] | None = None
    """Class labels in the column order of ``predict_proba``, for classifiers."""


class Signature(BaseModel):
    """Inputs in the order the model takes them, and the output."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: list[Column] = Field(min_length=1)
    output: Output = Output()

    @field_validator("inputs")
    @classmethod
    def _unique_names(cls, columns: list[Column]) -> list[Column]:
        seen: set[str] = set()
        for column in columns:
            if column.name in seen:
                raise ValueError(f"column {column.name!r} appears twice; names must be unique")
            seen.add(column.name)
        return columns

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.inputs]

    @property
    def numeric(self) -> bool:
        return all(column.numeric for column in self.inputs)

    def example_row(self) -> dict[str, Any]:
        """A plausible row keyed by column, for docs and the example request."""
        values: dict[str, Any] = {"string": "text", "bool": False}
        return {
            c.name: c.categories[0]
            if c.categories
            else values.get(c.dtype, 0.0 if c.dtype.startswith("float") else 0)
            for c in self.inputs
        }

    @classmethod
    def numbered(cls, n_features: int, dtype: DType = "float64", **output: Any) -> Signature:
        """A signature of ``n_features`` unnamed columns ``x0 .. x{n-1}``."""
        columns = [Column(name=f"x{i}", dtype=dtype) for i in range(n_features)]
        return cls(inputs=columns, output=Output(**output))
