"""The scikit-learn runtime: signature inference, refusals, and the skops trust list."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from flask.testing import FlaskClient
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models import CaseBook
from wharf.batch import Batch
from wharf.errors import InvalidInput, InvalidModel, UnsafeModel
from wharf.runtimes.sklearn import SklearnRuntime, infer_signature
from wharf.signature import Signature

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3))
Y = np.where(X[:, 0] > 0, "up", "down")


class Halver(TransformerMixin, BaseEstimator):
    """A custom transformer: a type skops cannot know to be safe."""

    def fit(self, X: Any, y: Any = None) -> Halver:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) / 2


class Constant:
    """Has scikit-learn's predict, and nothing else of its API: no tags, no input width."""

    def predict(self, X: Any) -> np.ndarray:
        return np.full(len(X), 7.0)


def dump(obj: Any, path: Path) -> Path:
    if path.suffix == ".skops":
        sio.dump(obj, path)
    elif path.suffix == ".joblib":
        joblib.dump(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))
    return path


def columns(signature: Signature) -> list[tuple[str, str, bool]]:
    return [(c.name, c.dtype, c.nullable) for c in signature.inputs]


# -- inference -------------------------------------------------------------------------------


def test_frame_columns_are_named_by_the_frame() -> None:
    frame = pd.DataFrame(X, columns=["area", "rooms", "age"])
    signature = infer_signature(LogisticRegression().fit(frame, Y))
    assert signature is not None
    assert columns(signature) == [
        ("area", "float64", False),
        ("rooms", "float64", False),
        ("age", "float64", False),
    ]
    assert signature.output.kind == "classification"
    assert signature.output.classes == ["down", "up"]


def test_array_columns_are_numbered_by_input_width() -> None:
    signature = infer_signature(LinearRegression().fit(X, X[:, 0]))
    assert signature is not None
    assert signature.names == ["x0", "x1", "x2"]
    assert signature.output.kind == "regression"
    assert signature.output.classes is None


@pytest.mark.parametrize(
    ("estimator", "nullable"),
    [
        (LogisticRegression(), False),
        (make_pipeline(StandardScaler(), LogisticRegression()), False),
        (make_pipeline(SimpleImputer(), LogisticRegression()), True),
        (make_pipeline(StandardScaler(), SimpleImputer(), LogisticRegression()), True),
        (HistGradientBoostingClassifier(max_iter=3), True),
    ],
    ids=["refuses-nan", "scaler-first", "imputer-first", "imputer-after-scaler", "native-nan"],
)
def test_columns_are_nullable_where_the_model_takes_missing_values(estimator: Any, nullable: bool) -> None:
    signature = infer_signature(estimator.fit(X, Y))
    assert signature is not None
    assert {c.nullable for c in signature.inputs} == {nullable}


def test_text_pipeline_takes_one_string_column(cases: CaseBook) -> None:
    runtime = SklearnRuntime.load(cases["text-tfidf"].path)
    assert columns(runtime.signature) == [("text", "string", False)]
    batch = Batch(["text"], columns=[np.asarray(["great coffee", "cold and rude"], dtype=object)])
    np.testing.assert_array_equal(runtime.predict(batch), ["good", "bad"])


def test_column_transformer_gives_each_column_its_dtype(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"rooms": RNG.integers(1, 4, size=40), "city": RNG.choice(["a", "b"], 40), "area": X[:, 0]}
    )
    prep = ColumnTransformer(
        [
            ("rooms", OneHotEncoder(handle_unknown="ignore"), ["rooms"]),
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("area", make_pipeline(SimpleImputer(), StandardScaler()), ["area"]),
        ]
    )
    model = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(frame, Y)
    runtime = SklearnRuntime.load(dump(model, tmp_path / "m.joblib"))
    assert columns(runtime.signature) == [
        ("rooms", "int64", False),
        ("city", "string", False),
        ("area", "float64", True),
    ]
    rows = pd.DataFrame({"rooms": [1, 3], "city": ["a", "b"], "area": [0.5, np.nan]})
    batch = Batch(
        list(rows.columns),
        columns=[rows["rooms"].to_numpy(), rows["city"].to_numpy(dtype=object), rows["area"].to_numpy()],
    )
    np.testing.assert_array_equal(runtime.predict(batch), model.predict(rows))
    np.testing.assert_allclose(runtime.predict_proba(batch), model.predict_proba(rows), rtol=0, atol=1e-12)


def test_object_with_only_predict_needs_an_explicit_signature(tmp_path: Path) -> None:
    path = dump(Constant(), tmp_path / "constant.pkl")
    with pytest.raises(InvalidModel, match="Cannot infer the input columns of this Constant"):
        SklearnRuntime.load(path, fmt="pickle")
    signature = Signature.numbered(2)
    runtime = SklearnRuntime.load(path, fmt="pickle", signature=signature)
    assert runtime.signature == signature
    np.testing.assert_array_equal(
        runtime.predict(Batch(["x0", "x1"], array=np.zeros((3, 2)))), [7.0, 7.0, 7.0]
    )
    assert runtime.predict_proba(Batch(["x0", "x1"], array=np.zeros((3, 2)))) is None


# -- explicit signatures ---------------------------------------------------------------------


def test_explicit_signature_gets_the_model_classes(tmp_path: Path) -> None:
    path = dump(LogisticRegression().fit(X, Y), tmp_path / "m.joblib")
    explicit = Signature.model_validate({"inputs": [{"name": n} for n in ("a", "b", "c")]})
    runtime = SklearnRuntime.load(path, signature=explicit)
    assert runtime.signature.names == ["a", "b", "c"]
    assert runtime.signature.output.kind == "classification"
    assert runtime.signature.output.classes == ["down", "up"]


def test_explicit_classes_are_kept(tmp_path: Path) -> None:
    path = dump(LogisticRegression().fit(X, Y), tmp_path / "m.joblib")
    explicit = Signature.numbered(3, kind="classification", classes=["DOWN", "UP"])
    assert SklearnRuntime.load(path, signature=explicit).signature == explicit


# -- what is refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "fmt", "content", "message"),
    [
        ("noise.pkl", "pickle", b"\x80\x05 not a pickle at all", "not a loadable pickle file"),
        ("noise.joblib", "joblib", bytes(range(256)), "not a loadable joblib file"),
        ("empty.joblib", "joblib", b"", "not a loadable joblib file"),
        ("noise.skops", "skops", b"PK\x03\x04 truncated zip", "not a skops file"),
    ],
)
def test_a_file_that_is_not_of_its_format_is_refused(
    tmp_path: Path, filename: str, fmt: str, content: bytes, message: str
) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(InvalidModel, match=message):
        SklearnRuntime.load(path, fmt=fmt)


@pytest.mark.parametrize("filename", ["settings.pkl", "settings.joblib", "settings.skops"])
def test_an_object_without_predict_is_refused(tmp_path: Path, filename: str) -> None:
    path = dump({"alpha": 1.0, "features": ["a", "b"]}, tmp_path / filename)
    fmt = {".pkl": "pickle"}.get(path.suffix, path.suffix[1:])
    with pytest.raises(InvalidModel, match="holds a dict, which has no predict method"):
        SklearnRuntime.load(path, fmt=fmt)


def test_model_rejecting_its_input_is_an_input_error(tmp_path: Path) -> None:
    runtime = SklearnRuntime.load(dump(LogisticRegression().fit(X, Y), tmp_path / "m.joblib"))
    wrong_width = Batch(["x0", "x1"], array=np.zeros((2, 2)))
    with pytest.raises(InvalidInput, match="LogisticRegression model rejected the input"):
        runtime.predict(wrong_width)


# -- skops -----------------------------------------------------------------------------------

HALVER = f"{__name__}.Halver"


@pytest.fixture
def custom_skops(tmp_path: Path) -> Path:
    model = Pipeline([("half", Halver()), ("clf", LogisticRegression())]).fit(X, Y)
    return dump(model, tmp_path / "custom.skops")


def test_skops_refuses_untrusted_types_by_name(custom_skops: Path) -> None:
    with pytest.raises(UnsafeModel) as caught:
        SklearnRuntime.load(custom_skops, fmt="skops")
    assert HALVER in caught.value.detail
    assert caught.value.extra["untrusted"] == [HALVER]


def test_skops_loads_types_on_the_trusted_list(custom_skops: Path) -> None:
    runtime = SklearnRuntime.load(custom_skops, fmt="skops", trusted=(HALVER,))
    expected = Pipeline([("half", Halver()), ("clf", LogisticRegression())]).fit(X, Y).predict(X[:5])
    np.testing.assert_array_equal(runtime.predict(Batch(["x0", "x1", "x2"], array=X[:5])), expected)


def test_skops_trusts_scikit_learn_own_types_unasked(tmp_path: Path) -> None:
    path = dump(RandomForestClassifier(n_estimators=2, random_state=0).fit(X, Y), tmp_path / "rf.skops")
    untrusted = sio.get_untrusted_types(file=path)  # skops itself does not trust them
    assert untrusted and all(name.startswith("sklearn.") for name in untrusted)
    assert SklearnRuntime.load(path, fmt="skops").signature.output.classes == ["down", "up"]


def test_untrusted_upload_is_a_problem_naming_the_type(client: FlaskClient, custom_skops: Path) -> None:
    data = {"file": (io.BytesIO(custom_skops.read_bytes()), "custom.skops")}
    response = client.post("/v1/models/custom/versions", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["type"] == "urn:wharf:problem:unsafe-model"
    assert problem["untrusted"] == [HALVER]
    assert client.get("/v1/models/custom").status_code == 404  # nothing was registered


def test_made_with_is_the_saving_scikit_learn(tmp_path: Path) -> None:
    import sklearn

    runtime = SklearnRuntime.load(dump(LogisticRegression().fit(X, Y), tmp_path / "m.joblib"))
    assert runtime.made_with == {"scikit-learn": sklearn.__version__}


def test_explicit_signature_must_have_the_model_width(tmp_path: Path) -> None:
    path = dump(LogisticRegression().fit(X, Y), tmp_path / "m.joblib")
    with pytest.raises(
        InvalidInput, match="names 2 input columns, but this LogisticRegression takes 3"
    ) as caught:
        SklearnRuntime.load(path, signature=Signature.numbered(2))
    assert caught.value.field == "signature.inputs"


def test_explicit_signature_of_a_frame_model_must_use_its_column_names(cases: CaseBook) -> None:
    case = cases["joblib-iris"]
    renamed = Signature.model_validate({"inputs": [{"name": n} for n in ("a", "b", "c", "d")]})
    with pytest.raises(InvalidInput, match="fitted on a DataFrame with the columns") as caught:
        SklearnRuntime.load(case.path, signature=renamed)
    assert caught.value.field == "signature.inputs"
    same = Signature.model_validate({"inputs": case.columns})
    assert SklearnRuntime.load(case.path, signature=same).signature.output.classes == case.classes


def test_only_steps_that_select_columns_by_name_get_a_dataframe() -> None:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from wharf.runtimes.sklearn import needs_frame

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    y = [0, 1, 0, 1]
    numeric = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y)
    assert not needs_frame(numeric)
    assert not needs_frame(make_pipeline(StandardScaler(), LogisticRegression()).fit(frame.to_numpy(), y))
    by_name = make_pipeline(ColumnTransformer([("a", StandardScaler(), ["a"])]), LogisticRegression())
    assert needs_frame(by_name.fit(frame, y))
    assert needs_frame(make_pipeline(FunctionTransformer(), LogisticRegression()).fit(frame, y))
    categorical = frame.assign(b=frame["b"].astype("category"))
    assert needs_frame(HistGradientBoostingClassifier(max_iter=2).fit(categorical, y))


def test_a_nan_the_signature_wrongly_allows_is_still_refused(tmp_path: Path) -> None:
    """Skipping scikit-learn's finiteness scan must not let a NaN reach a model that cannot take it."""
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, [0, 1, 0, 1])
    path = dump(model, tmp_path / "m.joblib")
    strict = SklearnRuntime.load(path, fmt="joblib")
    assert not any(c.nullable for c in strict.signature.inputs)
    assert strict.predict(Batch(["x0", "x1"], array=X)).tolist() == model.predict(X).tolist()

    lying = Signature.model_validate(
        {"inputs": [{"name": "x0", "nullable": True}, {"name": "x1"}], "output": {"kind": "classification"}}
    )
    runtime = SklearnRuntime.load(path, fmt="joblib", signature=lying)
    with pytest.raises(InvalidInput, match="NaN"):
        runtime.predict(Batch(["x0", "x1"], array=np.array([[np.nan, 1.0]])))
