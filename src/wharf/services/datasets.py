"""Datasets: uploaded tables, stored once as Parquet, profiled, and read back for training.

Adding is all-or-nothing, as registering a model is: the upload is read and checked
(:mod:`wharf.services.tables`), written as Parquet to a scratch folder, profiled, stored in the
artifact store under the digest of the Parquet bytes, then recorded; a failure at the database
removes an artifact this call wrote. The same table stored twice is one dataset: the second add
returns the first's record, with ``created`` False.
"""

from __future__ import annotations

import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import pandas as pd

from wharf.errors import ContentTooLarge, DatasetNotFound, InvalidDataset, InvalidInput, WharfError
from wharf.services.profiling import profile_frame
from wharf.services.registry import sha256_of
from wharf.services.tables import detect_format, read_table
from wharf.storage import ArtifactStore, MetadataStore
from wharf.storage.datasets import DatasetRecord, Records

MAX_ID = 2**63 - 1
MAX_NAME_LENGTH = 256
MAX_PROFILE_STRING = 200
"""Longest value a profile quotes (a categorical column's top values), in characters; longer ones
are cut and end with an ellipsis, so a column of huge cells makes a small profile."""


def check_dataset_name(name: str) -> str:
    """``name`` without surrounding spaces.

    :raises InvalidInput: empty, too long, or holding control characters.
    """
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH or any(_control(c) for c in cleaned):
        raise InvalidInput(
            f"Invalid dataset name {name[:100]!r}: use 1-{MAX_NAME_LENGTH} printable characters; "
            "leave it out to name the dataset after its file.",
            field="name",
        )
    return cleaned


def _control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") and char != " "


def base_name(filename: str) -> str:
    """The last part of a client's file name (``C:\\data\\x.csv`` -> ``x.csv``), at most 256 characters."""
    name = re.split(r"[\\/]", filename)[-1]
    return "".join(c for c in name if not _control(c))[:MAX_NAME_LENGTH] or "upload"


def read_parquet(path: Path) -> pd.DataFrame:
    """A stored dataset's table."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def write_parquet(frame: pd.DataFrame, target: Path, filename: str) -> None:
    """:raises InvalidDataset: a column holds values Parquet cannot store, naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        column = next((name for name in frame.columns if not _storable(frame[name])), None)
        where = f"Column {column!r} of {filename!r}" if column else repr(filename)
        raise InvalidDataset(
            f"{where} holds values that cannot be stored as a table column ({str(exc)[:200]}); "
            "each column must hold one type: numbers, text, booleans or dates.",
            field="file",
            column=column,
        ) from exc
    pq.write_table(table, target)


def _storable(series: pd.Series) -> bool:
    import pyarrow as pa

    try:
        pa.array(series, from_pandas=True)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return False
    return True


def bounded(profile: dict[str, Any]) -> dict[str, Any]:
    """``profile`` with every quoted value cut to :data:`MAX_PROFILE_STRING` characters."""
    for column in profile["columns"]:
        for top in (column.get("stats") or {}).get("top", []):
            value = top["value"]
            if isinstance(value, str) and len(value) > MAX_PROFILE_STRING:
                top["value"] = value[: MAX_PROFILE_STRING - 1] + "…"
    return profile


class Datasets:
    """Adds, finds, reads and deletes datasets.

    :param metadata: where dataset records live.
    :param artifacts: where the Parquet files live.
    :param max_bytes: largest file :meth:`add` reads (:class:`~wharf.errors.ContentTooLarge` above).
    :param scratch: folder for temporary files (default: the system's).
    """

    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        max_bytes: int,
        *,
        scratch: Path | None = None,
    ) -> None:
        self.metadata = metadata
        self.table = metadata.datasets
        self.artifacts = artifacts
        self.max_bytes = max_bytes
        self.scratch = scratch

    def add(self, source: Path, filename: str, name: str | None = None) -> DatasetRecord:
        """Read ``source`` (uploaded as ``filename``) and store it as a dataset.

        :param name: default: ``filename`` without its extension.
        :returns: the new dataset (``created`` True), or the one holding the same table already.
        :raises ContentTooLarge: ``source`` is over ``max_bytes``, or the table over a limit.
        :raises InvalidDataset: the file is not a table wharf reads (see :mod:`wharf.services.tables`).
        :raises InvalidInput: a bad ``name``.
        """
        shown = base_name(filename)
        name = check_dataset_name(name) if name else check_dataset_name(Path(shown).stem or "dataset")
        size = source.stat().st_size
        if size > self.max_bytes:
            raise ContentTooLarge(
                f"{shown!r} has {size} bytes; datasets may have at most {self.max_bytes} "
                "(WHARF_MAX_DATASET_BYTES). Drop columns or rows, or upload Parquet, which is smaller.",
                field="file",
            )
        fmt = detect_format(source, shown)
        frame = read_table(source, shown, fmt, self.max_bytes)
        with tempfile.TemporaryDirectory(dir=self.scratch, prefix="wharf-dataset-") as tmp:
            target = Path(tmp) / "table.parquet"
            write_parquet(frame, target, shown)
            del frame
            stored = read_parquet(target)
            profile = bounded(profile_frame(stored))
            sha256 = sha256_of(target)
            existing = self.table.find_by_sha256(sha256)
            if existing is not None:
                self.artifacts.put(target, sha256)  # in case a concurrent delete just removed it
                return existing
            key, written = self.artifacts.put(target, sha256)
            try:
                record = self.table.add(
                    name=name,
                    filename=shown,
                    format=fmt,
                    sha256=sha256,
                    artifact=key,
                    size=target.stat().st_size,
                    rows=len(stored),
                    columns=len(stored.columns),
                    profile=profile,
                )
            except BaseException:
                if written and not self._in_use(key):
                    self.artifacts.delete(key)
                raise
            # A delete of a dataset with the same bytes may have removed the file between our put
            # and our commit (it saw no dataset using it); put it back now that one does.
            self.artifacts.put(target, sha256)
        return record

    def list(self) -> Records:
        """Every dataset, oldest first."""
        return self.table.list()

    def get(self, dataset_id: int) -> DatasetRecord:
        """:raises DatasetNotFound:."""
        record = self.table.get(dataset_id) if 1 <= dataset_id <= MAX_ID else None
        if record is None:
            raise DatasetNotFound(self._unknown(dataset_id), field="dataset")
        return record

    def delete(self, dataset_id: int) -> DatasetRecord:
        """Delete a dataset and, unless something else uses it, its Parquet file.

        :raises DatasetNotFound:
        """
        self.get(dataset_id)
        record = self.table.delete(dataset_id)
        if record is None:  # deleted by someone else since
            raise DatasetNotFound(self._unknown(dataset_id), field="dataset")
        if not self._in_use(record.artifact):
            self.artifacts.delete(record.artifact)
        return record

    def path(self, dataset_id: int) -> Path:
        """A local Parquet file with the dataset's table; :raises DatasetNotFound:."""
        record = self.get(dataset_id)
        path = self.artifacts.local_path(record.artifact)
        if not path.is_file():
            raise WharfError(
                f"Dataset {dataset_id}'s table ({record.artifact}) is missing from the artifact "
                "store; delete the dataset and upload its file again."
            )
        return path

    def frame(self, dataset_id: int) -> pd.DataFrame:
        """The dataset's table, as stored; :raises DatasetNotFound:."""
        return read_parquet(self.path(dataset_id))

    def _in_use(self, key: str) -> bool:
        return self.table.artifact_in_use(key) or self.metadata.artifact_in_use(key)

    @staticmethod
    def _unknown(dataset_id: int) -> str:
        return f"No dataset with id {dataset_id}; GET /v1/datasets lists the datasets and their ids."
