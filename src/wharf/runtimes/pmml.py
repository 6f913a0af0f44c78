"""PMML documents through JPMML-Evaluator, in a Java VM hosted by JPype.

``load`` reads the signature from the XML itself (the data dictionary and the model's mining
schema) and starts no JVM: ``wharf serve`` loads every model before it forks its workers, and a
JVM does not survive a fork. Each process starts its JVM and builds its evaluator on its first
predict. Documents with a DOCTYPE are refused: entity declarations are the billion-laughs and XXE
vectors, and PMML needs none. Every column is nullable: PMML states how a model treats a missing
value, and a row the model cannot score is refused naming it.
"""

from __future__ import annotations

import os
import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wharf.batch import Batch
from wharf.errors import InvalidInput, InvalidModel, MissingDependency, ModelError
from wharf.runtimes.base import calling_model, complete
from wharf.signature import Column, DType, Output, OutputKind, Signature

DTYPES: dict[str, DType] = {"double": "float64", "float": "float64", "integer": "int64", "boolean": "bool"}
"""PMML data types -> signature dtypes; the others (string, dates, times) are strings."""
MODEL_ELEMENTS = frozenset(
    "AnomalyDetectionModel AssociationModel BaselineModel BayesianNetworkModel ClusteringModel "
    "GaussianProcessModel GeneralRegressionModel MiningModel NaiveBayesModel NearestNeighborModel "
    "NeuralNetwork RegressionModel RuleSetModel Scorecard SequenceModel SupportVectorMachineModel "
    "TextModel TimeSeriesModel TreeModel".split()
)
KINDS: dict[str, OutputKind] = {"classification": "classification", "regression": "regression"}
CHUNK = 1 << 16
JAVA_EXCEPTION = re.compile(r"^[\w$.]+(Exception|Error): ")
JVM_OPTIONS = ("-Xrs",)
"""The JVM leaves SIGINT, SIGTERM and SIGHUP to Python: the server's graceful stops keep working."""

_build_lock = threading.Lock()
_jvm_pid: int | None = None
"""The process in which wharf started the JVM."""


def _new_lock_after_fork() -> None:
    global _build_lock
    _build_lock = threading.Lock()  # a thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_new_lock_after_fork)


def _jpmml() -> Any:
    try:
        import jpmml_evaluator
        import jpype
    except ImportError as exc:
        raise MissingDependency(
            "Serving PMML models needs jpmml-evaluator and jpype1; run: pip install 'wharf[pmml]'."
        ) from exc
    try:
        jpype.getDefaultJVMPath()
    except (jpype.JVMNotFoundException, jpype.JVMNotSupportedException) as exc:
        raise MissingDependency(
            "Serving PMML models needs a Java 11+ runtime (JPMML-Evaluator runs in a JVM), and none was "
            "found; install one (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
        ) from exc
    return jpmml_evaluator


class _Done(Exception):
    """Raised by :class:`_Reader` once it has read what it needs, to stop the parser."""


class _Reader:
    """An XML parser target keeping the Header's Application, the DataDictionary and the first
    model's MiningSchema; it stops the parser there, so a forest's trees are never read."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.application: dict[str, str] = {}
        self.fields: dict[str, dict[str, Any]] = {}
        self.model: dict[str, str] | None = None
        self.mining: list[dict[str, str]] = []

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise InvalidModel(
            "The PMML file declares a DOCTYPE; wharf refuses DOCTYPE and ENTITY declarations (they can "
            "expand without bound or read local files) and PMML needs none. Remove <!DOCTYPE ...>."
        )

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        local = tag.rpartition("}")[2]  # PMML 3.x and 4.x namespaces alike
        path = (*self.stack[1:], local)
        self.stack.append(local)
        if len(self.stack) == 1 and local != "PMML":
            raise InvalidModel(
                f"This is not a PMML document: its root element is <{local}>, not <PMML>. Export the "
                "model as PMML (e.g. with sklearn2pmml)."
            )
        if path == ("Header", "Application"):
            self.application = dict(attrib)
        elif path == ("DataDictionary", "DataField"):
            self.fields[attrib.get("name", "")] = {**attrib, "values": []}
        elif path == ("DataDictionary", "DataField", "Value") and "value" in attrib:
            if attrib.get("property", "valid") == "valid":
                self.fields[next(reversed(self.fields))]["values"].append(attrib["value"])
        elif len(path) == 1 and local in MODEL_ELEMENTS:
            self.model = attrib
        elif self.model is not None and path[1:] == ("MiningSchema", "MiningField"):
            self.mining.append(attrib)

    def end(self, tag: str) -> None:
        local = self.stack.pop()
        if self.model is not None and (len(self.stack) == 1 or local == "MiningSchema"):
            raise _Done

    def data(self, data: str) -> None:
        pass

    def close(self) -> None:
        pass


def _read(path: Path) -> _Reader:
    """:raises InvalidModel: not well-formed XML, not PMML, a DOCTYPE, or no model element."""
    reader = _Reader()
    parser = ET.XMLParser(target=reader)
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                parser.feed(chunk)
            parser.close()
    except _Done:
        pass
    except ET.ParseError as exc:
        raise InvalidModel(f"This is not a well-formed PMML (XML) document: {exc}.") from exc
    if reader.model is None:
        raise InvalidModel(
            "The PMML document holds no model element; wharf serves a PMML document with one of "
            f"{', '.join(sorted(MODEL_ELEMENTS))} after its DataDictionary."
        )
    return reader


def _typed(value: str, data_type: str) -> Any:
    """A value as PMML writes it, as the Python value of its PMML ``dataType``."""
    if data_type == "integer":
        return int(value)
    if data_type in ("double", "float"):
        return float(value)
    if data_type == "boolean":
        return value.strip().lower() in ("true", "1")
    return value


def _schema(reader: _Reader) -> tuple[Signature, str, str]:
    """The signature, the target field and its PMML data type.

    :raises InvalidModel: a mining field missing from the data dictionary; not one target field.
    """
    columns: list[Column] = []
    targets: list[str] = []
    for mining in reader.mining:
        name = mining.get("name", "")
        field = reader.fields.get(name)
        if field is None:
            raise InvalidModel(
                f"The PMML mining field {name!r} is not in the data dictionary; declare it as a "
                "<DataField> of the <DataDictionary>."
            )
        usage = mining.get("usageType", "active")
        if usage in ("target", "predicted"):
            targets.append(name)
        elif usage == "active":
            data_type = field.get("dataType", "string")
            categorical = mining.get("optype", field.get("optype")) in ("categorical", "ordinal")
            categories = [_typed(v, data_type) for v in field["values"]] if categorical else None
            dtype = DTYPES.get(data_type, "string")
            columns.append(Column(name=name, dtype=dtype, nullable=True, categories=categories or None))
    if len(targets) != 1 or not columns:
        raise InvalidModel(
            f"The PMML model has {len(columns)} input fields and {len(targets)} target fields "
            f"({', '.join(map(repr, targets))}); wharf serves models of one or more inputs and one "
            'target (<MiningField usageType="target">).'
        )
    target = reader.fields[targets[0]]
    data_type = target.get("dataType", "string")
    kind = KINDS.get((reader.model or {}).get("functionName", ""), "other")
    classes = [_typed(v, data_type) for v in target["values"]] if kind == "classification" else []
    return Signature(inputs=columns, output=Output(kind=kind, classes=classes or None)), targets[0], data_type


def _start_jvm() -> None:
    """Start this process's JVM, leaving signals and the exit to Python.

    :raises ModelError: the JVM was started in the parent of this forked process.
    """
    import jpmml_evaluator
    import jpype

    global _jvm_pid
    if jpype.isJVMStarted():
        if _jvm_pid not in (None, os.getpid()):
            raise ModelError(
                "The Java VM serving PMML models was started before this worker process was forked, "
                "and a JVM does not survive a fork; do not predict with PMML models in the parent."
            )
        return
    # interrupt=False: no SIGINT handler of JPype's own either.
    jpype.startJVM(*JVM_OPTIONS, classpath=jpmml_evaluator._classpath([]), interrupt=False)
    _jvm_pid = os.getpid()
    if threading.current_thread() is not threading.main_thread():
        # The thread that creates a JVM stays attached as a non-daemon Java thread, and at exit the
        # JVM would wait for it for ever. Threads that call Java later attach as daemons.
        jpype.JClass("java.lang.Thread").detach()


class PmmlRuntime:
    """A PMML document evaluated by JPMML-Evaluator, one evaluator per process."""

    format: ClassVar[str] = "pmml"
    framework: ClassVar[str] = "jpmml-evaluator"

    def __init__(
        self,
        path: Path,
        signature: Signature,
        fields: list[str],
        target: str,
        data_type: str,
        kind: OutputKind,
        made_with: dict[str, str],
    ) -> None:
        self.path = path
        self.signature = signature
        self.fields = fields
        """The names the document's fields get, in signature order (an explicit signature may
        rename them, or add columns the document does not use)."""
        self.target = target
        self.data_type = data_type
        self.kind = kind
        """What the document's model function is (an explicit signature may say less)."""
        self.made_with = made_with
        self._built: tuple[int, Any, list[str] | None] | None = None
        """(process id, evaluator, probability columns in class order or None)."""
        classes = signature.output.classes or []
        self._classes = np.asarray(classes) if classes else None
        self._positions = {
            **{str(c): i for i, c in enumerate(classes)},
            **{c: i for i, c in enumerate(classes)},
        }

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        fmt: str = "pmml",
        signature: Signature | None = None,
        trusted: tuple[str, ...] = (),
    ) -> PmmlRuntime:
        jpmml_evaluator = _jpmml()
        reader = _read(path)
        inferred, target, data_type = _schema(reader)
        kind = inferred.output.kind
        made_with = {"jpmml-evaluator": jpmml_evaluator.__version__}
        if reader.application.get("name"):
            made_with[reader.application["name"]] = reader.application.get("version", "")
        if signature is not None and set(inferred.names) <= set(signature.names):
            # Fields are matched by name, and those the document does not use are ignored:
            # sklearn2pmml leaves out the columns a model never reads (a tree's unused features).
            resolved = complete(None, signature, "PMML model", output=inferred.output)
            return cls(path, resolved, signature.names, target, data_type, kind, made_with)
        resolved = complete(inferred, signature, "PMML model")  # renamed, in the document's order
        return cls(path, resolved, inferred.names, target, data_type, kind, made_with)

    def _evaluator(self) -> tuple[Any, list[str] | None]:
        """This process's evaluator and probability columns, built on first use.

        :raises ModelError: the JVM does not start, or JPMML-Evaluator refuses the document.
        """
        built = self._built
        if built is None or built[0] != os.getpid():
            with _build_lock:
                built = self._built
                if built is None or built[0] != os.getpid():
                    built = self._built = (os.getpid(), *self._build())
        return built[1], built[2]

    def _build(self) -> tuple[Any, list[str] | None]:
        from jpmml_evaluator import make_evaluator

        _start_jvm()
        try:
            evaluator = make_evaluator(str(self.path), backend="jpype").verify()
            probability: dict[Any, str] = {}
            for output in evaluator.getOutputFields():
                field = output.javaModelField.getField()
                if str(field.getResultFeature()) == "probability" and field.getValue() is not None:
                    label = str(field.getValue())
                    probability[label] = probability[_typed(label, self.data_type)] = output.getName()
        except Exception as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            detail = JAVA_EXCEPTION.sub("", first).replace(str(self.path), self.path.name).rstrip(".")
            raise ModelError(f"JPMML-Evaluator cannot evaluate this PMML document: {detail}.") from exc
        columns = [probability.get(c, probability.get(str(c))) for c in self.signature.output.classes or []]
        return evaluator, ([c for c in columns if c is not None] if columns and None not in columns else None)

    def _evaluate(self, batch: Batch) -> Any:
        """The result table (target and output columns), one row per input row.

        :raises InvalidInput: JPMML-Evaluator refuses a row (a value it cannot read, or an invalid
            one the model returns as invalid); the first is named.
        """
        evaluator, _ = self._evaluator()
        frame = batch.as_frame()
        frame.columns = self.fields
        frame = frame.astype(object).where(frame.notna(), None)  # None is PMML's missing; NaN is invalid
        with calling_model("PMML"):
            results, errors = evaluator.evaluateAll(
                frame, nan_as_missing=False, error_col=None, parallelism=1
            )
        if errors is not None and errors.notna().any():
            row = int(np.flatnonzero(errors.notna().to_numpy())[0])
            reason = JAVA_EXCEPTION.sub("", str(errors.iloc[row])).rstrip(".")
            raise InvalidInput(
                f"The PMML model refused row {row}: {reason}. Send values of the dtypes and "
                "categories of the model's signature.",
                row=row,
            )
        return results

    def predict(self, batch: Batch) -> np.ndarray:
        values = self._evaluate(batch)[self.target]
        if self.kind == "regression":
            return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
        missing = values.isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise InvalidInput(
                f"The PMML model gives no prediction for row {row}: a value is missing where the model "
                "has no treatment for a missing value. Send a value for every column of that row.",
                row=row,
            )
        if self._classes is None:
            return np.asarray(values.tolist())
        try:
            index = [self._positions[v] if v in self._positions else self._positions[str(v)] for v in values]
        except KeyError as exc:
            raise ModelError(
                f"The PMML model predicted {exc.args[0]!r}, none of its classes "
                f"{self.signature.output.classes!r}."
            ) from exc
        return self._classes[np.asarray(index, dtype=np.intp)]

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        """Probabilities in ``signature.output.classes`` order; None for a model without a
        probability output for each class (regressors among them)."""
        if self._classes is None:
            return None
        _, columns = self._evaluator()
        if columns is None:
            return None
        results = self._evaluate(batch)
        return np.column_stack([results[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in columns])
