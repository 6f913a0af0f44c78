"""The PMML runtime: signatures read without a JVM, documents of other tools, refusals, forks.

The documents here are written by hand, as another tool would write them; the scikit-learn
models exported by sklearn2pmml are compared with their originals in
tests/services/test_export_pmml.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import jpmml_evaluator
import numpy as np
import pytest

from wharf import runtimes
from wharf.batch import Batch
from wharf.errors import InvalidInput, InvalidModel, ModelError
from wharf.runtimes.base import Runtime
from wharf.runtimes.pmml import PmmlRuntime
from wharf.signature import Column, Signature

PRICE = """<?xml version="1.0" encoding="UTF-8"?>
<PMML xmlns="http://www.dmg.org/PMML-4_3" version="4.3">
  <Header description="A price model written by hand">
    <Application name="Handwritten" version="1.0"/>
  </Header>
  <DataDictionary numberOfFields="4">
    <DataField name="area" optype="continuous" dataType="double"/>
    <DataField name="rooms" optype="continuous" dataType="integer"/>
    <DataField name="city" optype="categorical" dataType="string">
      <Value value="Paris"/>
      <Value value="Rome"/>
    </DataField>
    <DataField name="price" optype="continuous" dataType="double"/>
  </DataDictionary>
  <RegressionModel modelName="price" functionName="regression">
    <MiningSchema>
      <MiningField name="area" missingValueReplacement="50"/>
      <MiningField name="rooms"/>
      <MiningField name="city"/>
      <MiningField name="price" usageType="target"/>
    </MiningSchema>
    <RegressionTable intercept="10">
      <NumericPredictor name="area" coefficient="2.5"/>
      <NumericPredictor name="rooms" coefficient="-1"/>
      <CategoricalPredictor name="city" value="Paris" coefficient="100"/>
      <CategoricalPredictor name="city" value="Rome" coefficient="50"/>
    </RegressionTable>
  </RegressionModel>
</PMML>
"""
"""price = 10 + 2.5 area - rooms + (100 Paris | 50 Rome); a missing area counts as 50."""

APPROVAL = """<?xml version="1.0" encoding="UTF-8"?>
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <Header/>
  <DataDictionary>
    <DataField name="score" optype="continuous" dataType="double"/>
    <DataField name="approved" optype="categorical" dataType="integer">
      <Value value="0"/>
      <Value value="1"/>
    </DataField>
  </DataDictionary>
  <RegressionModel functionName="classification" normalizationMethod="logit">
    <MiningSchema>
      <MiningField name="approved" usageType="target"/>
      <MiningField name="score"/>
    </MiningSchema>
    <Output>
      <OutputField name="yes" optype="continuous" dataType="double" feature="probability" value="1"/>
      <OutputField name="no" optype="continuous" dataType="double" feature="probability" value="0"/>
    </Output>
    <RegressionTable intercept="-1" targetCategory="1">
      <NumericPredictor name="score" coefficient="2"/>
    </RegressionTable>
    <RegressionTable intercept="0" targetCategory="0"/>
  </RegressionModel>
</PMML>
"""
"""A binary classifier with integer labels: P(1) = 1 / (1 + exp(1 - 2 score)); the probability
outputs are named freely and listed in another order than the classes."""

SCORES = np.array([[-1.0], [0.2], [0.6], [0.9], [3.0]])
LABELS = [0, 0, 1, 1, 1]


@pytest.fixture(scope="module")
def price(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pmml") / "price.pmml"
    path.write_text(PRICE)
    return path


@pytest.fixture(scope="module")
def approval(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pmml") / "approval.pmml"
    path.write_text(APPROVAL)
    return path


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (its own JVM, or none) and return what it printed."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_hand_written_document_is_served(price: Path) -> None:
    runtime = PmmlRuntime.load(price)
    assert isinstance(runtime, Runtime)
    assert runtimes.runtime_class("pmml") is PmmlRuntime
    assert runtimes.detect_format("upload", price.read_bytes()[:4096]) == "pmml"
    assert [(c.name, c.dtype, c.nullable, c.categories) for c in runtime.signature.inputs] == [
        ("area", "float64", True, None),
        ("rooms", "int64", True, None),
        ("city", "string", True, ["Paris", "Rome"]),
    ]
    assert runtime.signature.output.kind == "regression"
    assert runtime.made_with == {"jpmml-evaluator": jpmml_evaluator.__version__, "Handwritten": "1.0"}

    batch = Batch(
        ["area", "rooms", "city"],
        columns=[np.array([80.0, np.nan, 60.0]), np.array([3, 2, 1]), np.array(["Paris", "Rome", "Rome"])],
    )
    values = runtime.predict(batch)
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, [10 + 200 - 3 + 100, 10 + 125 - 2 + 50, 10 + 150 - 1 + 50])
    assert runtime.predict_proba(batch) is None


@pytest.mark.parametrize(
    ("column", "row", "message"),
    [
        (np.array(["Paris", "Oslo", "Rome"], dtype=object), 1, 'cannot accept invalid value "Oslo"'),
        (np.array(["Paris", "Rome", 3.5], dtype=object), 2, "cannot accept invalid value"),
    ],
)
def test_a_value_the_document_refuses_is_invalid_input_naming_the_row(
    price: Path, column: np.ndarray, row: int, message: str
) -> None:
    runtime = PmmlRuntime.load(price)
    batch = Batch(["area", "rooms", "city"], columns=[np.array([1.0, 2.0, 3.0]), np.array([1, 2, 3]), column])
    with pytest.raises(InvalidInput, match=message) as caught:
        runtime.predict(batch)
    assert caught.value.row == row
    assert "org.jpmml" not in caught.value.detail


def test_classifier_labels_keep_their_type_and_probabilities_the_class_order(approval: Path) -> None:
    runtime = PmmlRuntime.load(approval)
    assert runtime.signature.output.kind == "classification"
    assert runtime.signature.output.classes == [0, 1]
    assert runtime.made_with == {"jpmml-evaluator": jpmml_evaluator.__version__}

    batch = Batch(["score"], array=SCORES)
    p1 = 1 / (1 + np.exp(1 - 2 * SCORES[:, 0]))
    labels = runtime.predict(batch)
    assert labels.tolist() == LABELS == (p1 > 0.5).astype(int).tolist()
    assert all(type(label) is int for label in labels.tolist())
    proba = runtime.predict_proba(batch)
    assert proba is not None
    np.testing.assert_allclose(proba, np.column_stack([1 - p1, p1]), rtol=1e-12, atol=0)


def test_a_row_the_model_cannot_score_is_refused(approval: Path) -> None:
    """Without a missing-value treatment, a classifier gives no label: refused, row named."""
    runtime = PmmlRuntime.load(approval)
    with pytest.raises(InvalidInput, match="no prediction for row 1") as caught:
        runtime.predict(Batch(["score"], array=np.array([[0.5], [np.nan]])))
    assert caught.value.row == 1


def test_an_explicit_signature_renames_columns_and_keeps_the_classes(approval: Path) -> None:
    explicit = Signature(inputs=[Column(name="credit_score")])
    runtime = PmmlRuntime.load(approval, signature=explicit)
    assert runtime.signature.names == ["credit_score"]
    assert runtime.signature.output.classes == [0, 1]
    assert runtime.predict(Batch(["credit_score"], array=SCORES)).tolist() == LABELS


def test_an_explicit_signature_may_add_columns_the_document_does_not_use(price: Path) -> None:
    """sklearn2pmml leaves out unused columns; the source's signature still names them."""
    names = ["rooms", "unused", "city", "area"]
    explicit = Signature(inputs=[Column(name=n, dtype="string" if n == "city" else "float64") for n in names])
    runtime = PmmlRuntime.load(price, signature=explicit)
    assert runtime.signature.names == names
    batch = Batch(
        names,
        columns=[np.array([3.0]), np.array([7.0]), np.array(["Rome"], dtype=object), np.array([80.0])],
    )
    np.testing.assert_array_equal(runtime.predict(batch), [10 + 200 - 3 + 50])


def test_concurrent_first_predictions_build_one_evaluator(approval: Path) -> None:
    runtime = PmmlRuntime.load(approval)
    batch = Batch(["score"], array=np.tile(SCORES, (40, 1)))
    start = threading.Barrier(8)
    results: list[list[int]] = []

    def predict() -> None:
        start.wait()
        results.append(runtime.predict(batch).tolist())

    threads = [threading.Thread(target=predict) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result == LABELS * 40 for result in results)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.pmml"
    path.write_text(text)
    return path


LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE PMML [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<PMML version="4.4"><Header description="&lol2;"/></PMML>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE PMML [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<PMML version="4.4"><Header description="&secret;"/></PMML>"""
NO_MODEL = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/>
<DataDictionary><DataField name="x" optype="continuous" dataType="double"/></DataDictionary></PMML>"""
TWO_TARGETS = APPROVAL.replace(
    '<MiningField name="score"/>', '<MiningField name="score" usageType="target"/>'
)
UNDECLARED = APPROVAL.replace('<MiningField name="score"/>', '<MiningField name="income"/>')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<html><body>not a model</body></html>", "not a PMML document: its root element is <html>"),
        (LAUGHS, "declares a DOCTYPE"),
        (XXE, "declares a DOCTYPE"),
        (NO_MODEL, "holds no model element"),
        ("\x00\x01 binary", "not a well-formed PMML"),
        (TWO_TARGETS, "0 input fields and 2 target fields"),
        (UNDECLARED, "mining field 'income' is not in the data dictionary"),
    ],
)
def test_documents_that_are_not_servable_pmml_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidModel, match=message):
        PmmlRuntime.load(write(tmp_path, text))


def test_a_document_jpmml_evaluator_refuses_fails_on_first_predict(tmp_path: Path) -> None:
    """load() reads only the head of the document; the evaluator reads the rest."""
    broken = APPROVAL.replace('coefficient="2"', 'coefficient="two"')
    runtime = PmmlRuntime.load(write(tmp_path, broken))
    with pytest.raises(ModelError, match=r"cannot evaluate this PMML document: .*two") as caught:
        runtime.predict(Batch(["score"], array=SCORES))
    assert str(tmp_path) not in caught.value.detail


def test_load_starts_no_jvm_and_a_forked_worker_starts_its_own(approval: Path) -> None:
    """``wharf serve`` loads in the parent and predicts in forked workers, on server threads.

    A worker's JVM starts on a thread that is not the main one; the worker must still exit. A
    worker forked from a parent that already started its JVM is refused, not hung.
    """
    code = f"""
import json, os, sys, threading
from pathlib import Path
import jpype, numpy as np
from wharf.batch import Batch
from wharf.errors import ModelError
from wharf.runtimes.pmml import PmmlRuntime

runtime = PmmlRuntime.load(Path({str(approval)!r}))
report = {{"loaded_without_jvm": not jpype.isJVMStarted()}}
batch = Batch(["score"], array=np.array([[0.0], [2.0]]))

def in_child(work):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        with os.fdopen(write, "w") as out:
            out.write(json.dumps(work()))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as got:
        answer = json.loads(got.read() or "null")
    os.waitpid(pid, 0)
    return answer

def on_a_thread():
    found = []
    worker = threading.Thread(target=lambda: found.append(runtime.predict(batch).tolist()))
    worker.start()
    worker.join()
    return found[0] if found else None

def refused():
    try:
        runtime.predict(batch)
    except ModelError as exc:
        return exc.detail
    return "answered"

report["child"] = in_child(on_a_thread)
report["parent_still_without_jvm"] = not jpype.isJVMStarted()
report["parent"] = on_a_thread()
report["child_of_a_started_parent"] = in_child(refused)
print(json.dumps(report))
"""
    report = json.loads(run_python(code))  # the interpreter exits: the JVM waits for no thread
    assert report["loaded_without_jvm"]
    assert report["child"] == [0, 1]
    assert report["parent_still_without_jvm"]
    assert report["parent"] == [0, 1]
    assert "does not survive a fork" in report["child_of_a_started_parent"]
