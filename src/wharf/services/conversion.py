"""Converting versions to ONNX or PMML, with a parity report; choosing the version that answers.

A conversion loads the source version, exports it to a temporary file, loads that with its own
runtime and compares the two on a sample of rows (:mod:`wharf.services.parity`). A conversion
within the tolerance becomes the next version of the same model, its lineage naming the source
and its report stored with it; one outside is refused with the report, unless forced (and then
marked so, and never used as a fast twin).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wharf.errors import Conflict, ParityFailed
from wharf.runtimes.base import Runtime
from wharf.services import exporters, parity
from wharf.services.decoding import Decoder
from wharf.services.registry import (
    ANSWERED_BY,
    LINEAGE,
    PARITY,
    Registration,
    Registry,
)
from wharf.storage import VersionRecord


@dataclass(frozen=True)
class ConversionRequest:
    """What a caller asks of one conversion.

    :param sample: rows to compare on (the training holdout, or any real rows): a list of rows, a
        request body in any format predict takes, or CSV bytes with a header; None: the rows a
        training job held out of the version's fit where it has them, else rows generated from the
        signature.
    :param force: register even when parity falls outside the tolerance.
    """

    target: str
    tolerance: parity.Tolerance = field(default_factory=parity.Tolerance)
    sample: list[Any] | dict[str, Any] | bytes | None = None
    sample_size: int = parity.SAMPLE_ROWS
    seed: int = 0
    force: bool = False


class Converter:
    """Converts registered versions and sets which version answers for a source.

    :param max_rows: most sample rows accepted (the decoder's row limit).
    """

    def __init__(self, registry: Registry, max_rows: int) -> None:
        self.registry = registry
        self.max_rows = max_rows

    def convert(self, name: str, version: int, request: ConversionRequest) -> VersionRecord:
        """Convert ``name:version``; the new version's record, its report under ``extra["parity"]``.

        :raises UnsupportedConversion: the format, model or a step cannot be converted.
        :raises ParityFailed: outside the tolerance and not forced; carries the report.
        :raises InvalidInput: sample rows that do not fit the signature.
        """
        record = self.registry.get(name, version)
        source = self._load(record)
        suffix = exporters.SUFFIXES.get(request.target, "")
        with tempfile.TemporaryDirectory(prefix="wharf-convert-") as folder:
            dest = Path(folder) / f"converted{suffix}"
            exporters.export(source, request.target, dest)
            converted = self.registry.load(request.target, dest, source.signature)
            report = self.report(source, converted, record, request)
            if not report["passed"] and not request.force:
                raise ParityFailed(
                    f"The {request.target} conversion of {name}:{version} answers differently from "
                    f"its source: {_summary(report)}. Nothing was registered; see 'parity' for the "
                    "report, widen the tolerance, or force the conversion.",
                    field="tolerance",
                    parity=report,
                )
            options = Registration(
                format=request.target,
                signature=source.signature,
                description=f"{request.target.upper()} conversion of version {version}"
                + (f": {record.description}" if record.description else ""),
                tags=dict(record.tags),
                provenance={
                    LINEAGE: {
                        "source_version": version,
                        "source_sha256": record.sha256,
                        "conversion": request.target,
                    },
                    PARITY: report,
                },
            )
            return self.registry.register(name, dest, f"{name}-v{version}{suffix}", options)

    def report(
        self, source: Runtime, converted: Runtime, record: VersionRecord, request: ConversionRequest
    ) -> dict[str, Any]:
        """The parity report of ``converted`` against ``source``."""
        decoder = Decoder(source.signature, max(self.max_rows, request.sample_size))
        if isinstance(request.sample, bytes):
            batch, origin = decoder.decode_csv(request.sample), "given"
        elif isinstance(request.sample, dict):  # a request body, in any format predict takes
            batch, origin = decoder.decode(request.sample), "given"
        elif request.sample is not None:
            batch, origin = decoder.decode_rows(request.sample, "sample"), "given"
        elif (holdout := self._holdout(record, source, request.sample_size)) is not None:
            batch, origin = decoder.decode_rows(holdout, "holdout"), "holdout"
        else:
            hints = parity.hints_of(getattr(source, "estimator", None), source.signature)
            rows = parity.generate_rows(source.signature, hints, request.sample_size, request.seed)
            batch, origin = decoder.decode_rows(rows, "sample"), "generated"
        one = batch.take(slice(0, 1))
        report = parity.compare(source, converted, batch, request.tolerance)
        report |= {
            "sample": origin,
            "seed": request.seed if origin == "generated" else None,
            "tolerance": {"labels": request.tolerance.labels, "rtol": request.tolerance.rtol},
            "forced": request.force and not report["passed"],
            "latency": {
                "source": {"format": record.format, **parity.latency(source, batch, one)},
                "converted": {"format": request.target, **parity.latency(converted, batch, one)},
            },
        }
        return report

    def _holdout(self, record: VersionRecord, source: Runtime, size: int) -> list[dict[str, Any]] | None:
        """Up to ``size`` rows a training job held out of this version's fit, where it recorded them."""
        holdout = (record.extra.get(LINEAGE) or {}).get("holdout")
        if not isinstance(holdout, dict) or not holdout.get("artifact"):
            return None
        path = self.registry.artifacts.local_path(str(holdout["artifact"]))
        if not path.is_file():
            return None
        import pandas as pd

        frame = pd.read_parquet(path).head(size)
        names = source.signature.names
        if frame.empty or not set(names) <= set(frame.columns):
            return None
        frame = frame[names].astype(object)
        return [
            {
                k: (None if v is None or v != v else v.isoformat() if hasattr(v, "isoformat") else v)
                for k, v in row.items()
            }
            for row in frame.to_dict(orient="records")
        ]

    def _load(self, record: VersionRecord) -> Runtime:
        return self.registry.open(record)

    # -- the answering version -----------------------------------------------------------------

    def set_fast(self, name: str, version: int, twin: int | None = None) -> VersionRecord:
        """Let a verified ONNX twin answer for ``name:version`` (the newest one, or ``twin``).

        :raises Conflict: no conversion of this version passed its parity check.
        """
        self.registry.get(name, version)
        twins = [r for r in self.registry.versions(name) if _twin_of(r) == version]
        if twin is not None:
            twins = [r for r in twins if r.version == twin]
        verified = [r for r in twins if r.format == "onnx" and _verified(r)]
        if not verified:
            made = ", ".join(f"v{r.version} ({r.format}, {_state(r)})" for r in twins) or "none"
            raise Conflict(
                f"{name}:{version} has no ONNX conversion that passed its parity check (conversions: "
                f"{made}); run: wharf convert {name}:{version} --to onnx",
                field="version",
            )
        chosen = verified[-1]
        self.registry.metadata.update_extra(name, version, {ANSWERED_BY: chosen.version})
        return self.registry.get(name, version)

    def unset_fast(self, name: str, version: int) -> VersionRecord:
        """Let ``name:version`` answer for itself again."""
        self.registry.get(name, version)
        self.registry.metadata.update_extra(name, version, {ANSWERED_BY: None})
        return self.registry.get(name, version)


def _twin_of(record: VersionRecord) -> int | None:
    lineage = record.extra.get(LINEAGE) or {}
    source = lineage.get("source_version")
    return int(source) if isinstance(source, int) else None


def _verified(record: VersionRecord) -> bool:
    report = record.extra.get(PARITY) or {}
    return bool(report.get("passed")) and not report.get("forced")


def _state(record: VersionRecord) -> str:
    return "verified" if _verified(record) else "forced past its parity check"


def _summary(report: dict[str, Any]) -> str:
    parts = []
    if "labels_equal" in report:
        parts.append(
            f"{report['labels_equal']:.2%} of labels equal (need {report['tolerance']['labels']:.2%})"
        )
    if "max_rel_diff" in report:
        parts.append(
            f"largest relative difference {report['max_rel_diff']:.3g} "
            f"(allowed {report['tolerance']['rtol']:g})"
        )
    if report.get("rows_differing") and report.get("rows_differing") == report.get(
        "rows_differing_with_missing"
    ):
        parts.append(
            f"all {report['rows_differing']} differing rows have a missing value, which the converted "
            "model routes differently; if clients never send missing values, convert with a sample of "
            "real rows"
        )
    return "; ".join(parts) or "the outputs have different shapes"
