"""The LightGBM runtime: text model files, objectives, and labels equal to LGBMClassifier's."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest

from models import LGBM_TINY, CaseBook
from wharf.batch import Batch
from wharf.errors import InvalidInput, InvalidModel
from wharf.runtimes.lightgbm import LightGBMRuntime
from wharf.signature import Signature

RNG = np.random.default_rng(0)
X = RNG.normal(size=(90, 3))
CLASSES = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
NAMES = ["x0", "x1", "x2"]


def saved(model: lightgbm.LGBMModel, path: Path) -> Path:
    model.booster_.save_model(str(path))
    return path


def batch(rows: np.ndarray, names: list[str] | None = None) -> Batch:
    return Batch(names or [f"Column_{j}" for j in range(rows.shape[1])], array=rows)


def test_feature_names_come_from_the_booster(tmp_path: Path) -> None:
    frame = pd.DataFrame(X, columns=["area", "rooms", "age"])
    model = lightgbm.LGBMRegressor(**LGBM_TINY).fit(frame, X[:, 0])
    signature = LightGBMRuntime.load(saved(model, tmp_path / "m.txt")).signature
    assert [(c.name, c.dtype, c.nullable) for c in signature.inputs] == [
        ("area", "float64", True),
        ("rooms", "float64", True),
        ("age", "float64", True),
    ]
    assert signature.output.kind == "regression"
    assert signature.output.classes is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no 'objective=' line before the first tree"),
        (b"a plain text file\nwith two lines\n", "no 'objective=' line before the first tree"),
        (b"tree\nversion=v4\nobjective=binary\n", "not a LightGBM text model file"),
        (b"objective=binary\n", "Unknown model format or submodel type in model file m.txt"),
        (bytes(range(256)) * 4, "not a LightGBM text model file"),
    ],
    ids=["empty", "text", "header-only", "objective-only", "binary-noise"],
)
def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "secret-server-folder" / "m.txt"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(InvalidModel, match=message) as caught:
        LightGBMRuntime.load(path)
    assert "secret-server-folder" not in caught.value.detail


def test_multiclass_answers_as_lgbmclassifier(tmp_path: Path) -> None:
    model = lightgbm.LGBMClassifier(**LGBM_TINY).fit(X, CLASSES)
    runtime = LightGBMRuntime.load(saved(model, tmp_path / "m.txt"))
    assert runtime.signature.output.classes == [0, 1, 2]
    np.testing.assert_array_equal(runtime.predict(batch(X)), model.predict(X))
    np.testing.assert_allclose(runtime.predict_proba(batch(X)), model.predict_proba(X), rtol=0, atol=1e-12)


def test_binary_labels_equal_lgbmclassifier_everywhere(tmp_path: Path) -> None:
    target = (X[:, 0] + RNG.normal(0, 0.5, size=len(X)) > 0).astype(int)
    model = lightgbm.LGBMClassifier(**LGBM_TINY).fit(X, target)
    runtime = LightGBMRuntime.load(saved(model, tmp_path / "m.txt"))
    np.testing.assert_array_equal(runtime.predict(batch(X)), model.predict(X))
    np.testing.assert_allclose(runtime.predict_proba(batch(X)), model.predict_proba(X), rtol=0, atol=1e-12)


def test_string_labels_need_explicit_classes(tmp_path: Path) -> None:
    """The file keeps class indices only; the classifier's own labels come from the signature."""
    labels = np.array(["cheap", "fair", "dear"])[CLASSES]
    model = lightgbm.LGBMClassifier(**LGBM_TINY).fit(X, labels)
    path = saved(model, tmp_path / "m.txt")
    assert LightGBMRuntime.load(path).signature.output.classes == [0, 1, 2]
    explicit = Signature.model_validate(
        {
            "inputs": [{"name": n} for n in NAMES],
            "output": {"kind": "classification", "classes": ["cheap", "dear", "fair"]},
        }
    )
    assert model.classes_.tolist() == ["cheap", "dear", "fair"]
    runtime = LightGBMRuntime.load(path, signature=explicit)
    np.testing.assert_array_equal(runtime.predict(batch(X, NAMES)), model.predict(X))


def test_missing_values_are_native(cases: CaseBook) -> None:
    case = cases["lightgbm-binary"]
    rows = pd.DataFrame({"score": [0.3, np.nan, -1.2], "visits": [np.nan, 4.0, np.nan]})
    runtime = LightGBMRuntime.load(case.path)
    got = runtime.predict_proba(Batch(["score", "visits"], array=rows.to_numpy()))
    np.testing.assert_allclose(got, case.model.predict_proba(rows), rtol=0, atol=1e-12)


def test_explicit_signature_must_have_the_model_width(cases: CaseBook) -> None:
    case = cases["lightgbm-regressor"]
    with pytest.raises(
        InvalidInput, match="names 2 input columns, but this LightGBM model takes 10"
    ) as caught:
        LightGBMRuntime.load(case.path, signature=Signature.numbered(2))
    assert caught.value.field == "signature.inputs"


def test_made_with_is_the_loading_lightgbm(cases: CaseBook) -> None:
    runtime = LightGBMRuntime.load(cases["lightgbm-regressor"].path)
    assert runtime.made_with == {"lightgbm": lightgbm.__version__}
