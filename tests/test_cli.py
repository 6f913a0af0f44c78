"""The ``wharf`` command line, driven through click's runner against a real registry in tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sklearn import datasets
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from wharf.cli import cli
from wharf.errors import (
    Conflict,
    InvalidInput,
    InvalidModel,
    MalformedBody,
    ModelNotFound,
    ParityFailed,
    VersionNotFound,
)
from wharf.version import __version__


@pytest.fixture
def iris_file(tmp_path: Path, iris: tuple[Pipeline, pd.DataFrame]) -> Path:
    path = tmp_path / "iris.joblib"
    joblib.dump(iris[0], path)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def wharf(runner: CliRunner, home: Path) -> Iterator[Any]:
    """``wharf --home <tmp> ARGS...`` returning click's result."""

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, ["--home", str(home), *args], input=input)

    yield invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def registered(wharf: Any, iris_file: Path, name: str = "iris") -> None:
    ok(wharf("models", "register", name, str(iris_file)))


def rows_of(X: pd.DataFrame) -> list[dict[str, float]]:
    return [{str(k): float(v) for k, v in row.items()} for _, row in X.iterrows()]


# -- help and version ------------------------------------------------------------------------


def test_version(runner: CliRunner) -> None:
    result = ok(runner.invoke(cli, ["--version"]))
    assert result.output.strip() == f"wharf, version {__version__}"


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(cli))


def test_command_tree_is_walked() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {
        "",
        "serve",
        "predict",
        "demo",
        "models",
        "models list",
        "models show",
        "models register",
        "models delete",
    } <= paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "wharf" for p, _ in COMMANDS])
def test_every_command_documents_itself_and_its_options(
    runner: CliRunner, path: tuple[str, ...], command: click.Command
) -> None:
    result = ok(runner.invoke(cli, [*path, "--help"]))
    assert command.help and command.help.strip(), f"{path} has no docstring"
    text = " ".join(result.output.split())  # help is re-wrapped to the terminal's width
    assert " ".join(command.help.split("\n\n")[0].split()) in text
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help and param.help.strip(), f"option {param.opts} of {path} has no help"
            assert " ".join(param.help.split()) in text
            for opt in param.opts:
                assert opt in result.output
        else:
            assert param.human_readable_name in result.output.splitlines()[0], (param.name, result.output)


# -- models register / list / show / delete --------------------------------------------------


def test_register_with_every_option(wharf: Any, tmp_path: Path, iris: tuple[Pipeline, pd.DataFrame]) -> None:
    model, X = iris
    path = tmp_path / "model.bin"  # a name that says nothing about the format
    joblib.dump(model, path)
    signature = {
        "inputs": [{"name": str(c), "dtype": "float64"} for c in X.columns],
        "output": {"kind": "classification"},
    }
    (tmp_path / "signature.json").write_text(json.dumps(signature))
    example = rows_of(X.head(1))[0]

    result = ok(
        wharf(
            "models",
            "register",
            "flowers",
            str(path),
            "--format",
            "joblib",
            "--signature",
            f"@{tmp_path / 'signature.json'}",
            "--tag",
            "team=ml",
            "--tag",
            "stage=dev",
            "--description",
            "Iris species",
            "--metadata",
            json.dumps({"owner": "ana", "example": example}),
        )
    )
    assert "as flowers:1 (joblib, sha256 " in result.output

    shown = json.loads(ok(wharf("models", "show", "flowers")).stdout)
    assert shown["name"] == "flowers"
    assert shown["version"] == 1
    assert shown["format"] == "joblib"
    assert shown["filename"] == "model.bin"
    assert shown["tags"] == {"team": "ml", "stage": "dev"}
    assert shown["description"] == "Iris species"
    assert shown["metadata"] == {"owner": "ana"}
    assert shown["example"] == {"instances": [example]}
    assert [c["name"] for c in shown["signature"]["inputs"]] == list(X.columns)
    # The explicit signature said nothing of classes; the model's own labels complete it.
    assert shown["signature"]["output"]["classes"] == model.classes_.tolist()


def test_register_signature_inline_json(
    wharf: Any, iris_file: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    _, X = iris
    inputs = [{"name": str(c), "dtype": "float64", "nullable": True} for c in X.columns]
    ok(wharf("models", "register", "iris", str(iris_file), "--signature", json.dumps({"inputs": inputs})))
    shown = json.loads(ok(wharf("models", "show", "iris")).stdout)
    assert [c["nullable"] for c in shown["signature"]["inputs"]] == [True] * 4


def test_list_table_and_json(wharf: Any, iris_file: Path) -> None:
    assert "no models registered" in ok(wharf("models", "list")).output
    assert json.loads(ok(wharf("models", "list", "--json")).stdout) == []
    registered(wharf, iris_file)
    registered(wharf, iris_file)
    ok(wharf("models", "register", "other", str(iris_file), "--description", "second model"))

    table = ok(wharf("models", "list")).stdout.splitlines()
    assert table[0].split() == ["NAME", "LATEST", "VERSIONS", "FORMAT", "DESCRIPTION"]
    assert table[1].split() == ["iris", "2", "2", "joblib"]
    assert table[2].split() == ["other", "1", "1", "joblib", "second", "model"]

    rows = json.loads(ok(wharf("models", "list", "--json")).stdout)
    assert rows == [
        {"name": "iris", "versions": 2, "latest": 2, "aliases": {}, "format": "joblib", "description": ""},
        {
            "name": "other",
            "versions": 1,
            "latest": 1,
            "aliases": {},
            "format": "joblib",
            "description": "second model",
        },
    ]


def test_show_latest_and_one_version(wharf: Any, iris_file: Path) -> None:
    registered(wharf, iris_file)
    ok(wharf("models", "register", "iris", str(iris_file), "--description", "v2"))
    latest = json.loads(ok(wharf("models", "show", "iris")).stdout)
    first = json.loads(ok(wharf("models", "show", "iris:1")).stdout)
    assert (latest["version"], latest["description"]) == (2, "v2")
    assert (first["version"], first["description"]) == (1, "")
    assert first["sha256"] == latest["sha256"]
    assert set(first["library_versions"]) >= {"python", "numpy", "scikit-learn"}


def test_delete_one_version_then_the_model(wharf: Any, iris_file: Path) -> None:
    for _ in range(3):
        registered(wharf, iris_file)
    assert ok(wharf("models", "delete", "iris:2", "--yes")).output.strip() == "deleted iris version(s) 2"
    result = wharf("models", "show", "iris:2")
    assert result.exit_code == VersionNotFound.exit_code
    assert "has no version 2; it has [1, 3]" in result.stderr

    assert ok(wharf("models", "delete", "iris", "--yes")).output.strip() == "deleted iris version(s) 1, 3"
    assert json.loads(ok(wharf("models", "list", "--json")).stdout) == []


def test_delete_asks_first(wharf: Any, iris_file: Path) -> None:
    registered(wharf, iris_file)
    result = wharf("models", "delete", "iris:1", input="n\n")
    assert result.exit_code == 1
    assert "Delete iris:1?" in result.output
    assert "Aborted" in result.output
    assert json.loads(ok(wharf("models", "show", "iris:1")).stdout)["version"] == 1

    ok(wharf("models", "delete", "iris:1", input="y\n"))
    assert wharf("models", "show", "iris:1").exit_code == VersionNotFound.exit_code


# -- predict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["csv", "rows", "instances", "dataframe_split", "stdin"])
def test_predict_equals_the_model(
    wharf: Any, tmp_path: Path, iris_file: Path, iris: tuple[Pipeline, pd.DataFrame], shape: str
) -> None:
    model, X = iris
    sample = X.iloc[::10]  # 15 rows across the three species
    registered(wharf, iris_file)
    stdin = None
    if shape == "csv":
        path = tmp_path / "rows.csv"
        sample.to_csv(path, index=False)
    elif shape == "stdin":
        path = Path("-")
        stdin = sample.to_csv(index=False)
    else:
        body: Any = {
            "rows": rows_of(sample),
            "instances": {"instances": rows_of(sample)},
            "dataframe_split": {"columns": list(sample.columns), "data": sample.to_numpy().tolist()},
        }[shape]
        if shape == "dataframe_split":
            body = {"dataframe_split": body}
        path = tmp_path / "rows.json"
        path.write_text(json.dumps(body))

    response = json.loads(ok(wharf("predict", "iris", "--input", str(path), input=stdin)).stdout)
    assert response["model"] == "iris"
    assert response["version"] == 1
    assert response["predictions"] == model.predict(sample).tolist()
    assert len(set(response["predictions"])) == 3


def test_predict_probabilities_and_version(
    wharf: Any, tmp_path: Path, iris_file: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    model, X = iris
    sample = X.iloc[[0, 60, 120]]
    registered(wharf, iris_file)
    registered(wharf, iris_file)
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows_of(sample)))
    response = json.loads(ok(wharf("predict", "iris:1", "--input", str(path), "--probabilities")).stdout)
    assert response["version"] == 1
    assert response["classes"] == model.classes_.tolist()
    np.testing.assert_allclose(response["probabilities"], model.predict_proba(sample), rtol=1e-12)


# -- errors ----------------------------------------------------------------------------------


def failed(result: Result, exit_code: int, message: str) -> None:
    assert result.exit_code == exit_code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # a message, not a traceback
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr, result.stderr


def test_unknown_model(wharf: Any, tmp_path: Path, iris_file: Path) -> None:
    registered(wharf, iris_file)
    rows = tmp_path / "rows.json"
    rows.write_text("[[1, 2, 3, 4]]")
    failed(wharf("predict", "nope", "--input", str(rows)), ModelNotFound.exit_code, "No model named 'nope'.")
    failed(
        wharf("models", "show", "irsi"),
        ModelNotFound.exit_code,
        "No model named 'irsi'. Did you mean 'iris'?",
    )
    failed(wharf("models", "delete", "nope", "--yes"), ModelNotFound.exit_code, "No model named 'nope'.")


def test_unknown_version(wharf: Any, iris_file: Path) -> None:
    registered(wharf, iris_file)
    failed(
        wharf("models", "show", "iris:7"),
        VersionNotFound.exit_code,
        "Model 'iris' has no version 7; it has [1].",
    )
    failed(wharf("models", "delete", "iris:7", "--yes"), VersionNotFound.exit_code, "has no version 7")


@pytest.mark.parametrize("ref", ["iris:latest", "iris:", "iris:-1", "iris:1.5"])
def test_bad_reference(wharf: Any, iris_file: Path, tmp_path: Path, ref: str) -> None:
    registered(wharf, iris_file)
    rows = tmp_path / "rows.json"
    rows.write_text("[[1, 2, 3, 4]]")
    message = f"Version in {ref!r} must be a whole number, as in iris:3."
    failed(wharf("models", "show", ref), InvalidInput.exit_code, message)
    failed(wharf("predict", ref, "--input", str(rows)), InvalidInput.exit_code, message)


def test_invalid_json_input(wharf: Any, iris_file: Path, tmp_path: Path) -> None:
    registered(wharf, iris_file)
    rows = tmp_path / "rows.json"
    rows.write_text('{"instances": [')
    failed(
        wharf("predict", "iris", "--input", str(rows)), MalformedBody.exit_code, "rows.json is not valid JSON"
    )


def test_rows_that_do_not_fit(wharf: Any, iris_file: Path, tmp_path: Path) -> None:
    registered(wharf, iris_file)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"sepal length (cm)": 1.0, "petal size": 2.0}]))
    failed(wharf("predict", "iris", "--input", str(rows)), InvalidInput.exit_code, "'petal size'")


def test_invalid_options(wharf: Any, iris_file: Path, tmp_path: Path) -> None:
    failed(
        wharf("models", "register", "iris", str(iris_file), "--tag", "novalue"),
        InvalidInput.exit_code,
        "--tag takes KEY=VALUE, got 'novalue'.",
    )
    failed(
        wharf("models", "register", "iris", str(iris_file), "--metadata", "{oops"),
        MalformedBody.exit_code,
        "--metadata is not valid JSON",
    )
    failed(
        wharf("models", "register", "iris", str(iris_file), "--signature", '{"inputs": 3}'),
        InvalidInput.exit_code,
        "Invalid signature at 'inputs'",
    )
    failed(
        wharf("models", "register", "../iris", str(iris_file)),
        InvalidInput.exit_code,
        "Invalid model name '../iris'",
    )
    assert json.loads(ok(wharf("models", "list", "--json")).stdout) == []


def test_unreadable_or_misshapen_json_options(wharf: Any, iris_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    failed(
        wharf("models", "register", "iris", str(iris_file), "--signature", f"@{missing}"),
        InvalidInput.exit_code,
        f"--signature '@{missing}' names a file that cannot be read",
    )
    failed(
        wharf("models", "register", "iris", str(iris_file), "--metadata", "[1, 2]"),
        InvalidInput.exit_code,
        "--metadata must be a JSON object, got list",
    )
    assert json.loads(ok(wharf("models", "list", "--json")).stdout) == []


def test_serving_a_file_whose_name_is_no_model_name(wharf: Any, iris_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "my model.joblib"
    path.write_bytes(iris_file.read_bytes())
    failed(
        wharf("serve", str(path)),
        InvalidInput.exit_code,
        f"rename the file, or register it with: wharf models register NAME '{path}' and serve NAME.",
    )


def test_a_file_that_is_not_a_model(wharf: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"not a model at all")
    failed(
        wharf("models", "register", "iris", str(path)), InvalidModel.exit_code, "not a loadable joblib file"
    )
    assert json.loads(ok(wharf("models", "list", "--json")).stdout) == []


def test_invalid_settings_are_a_message(runner: CliRunner, home: Path) -> None:
    result = runner.invoke(cli, ["--home", str(home), "models", "list"], env={"WHARF_PORT": "eighty"})
    failed(result, InvalidInput.exit_code, "WHARF_PORT")
    assert "'eighty'" in result.stderr
    result = runner.invoke(cli, ["--home", str(home), "serve", "--port", "70000"])
    failed(result, InvalidInput.exit_code, "port")
    assert "65535" in result.stderr


# -- demo ------------------------------------------------------------------------------------


def _demo_models() -> dict[str, tuple[Any, pd.DataFrame]]:
    """The demo models retrained here exactly as documented in wharf.services.demo."""
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    iris = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    iris.fit(X, datasets.load_iris().target_names[y])
    D, t = datasets.load_diabetes(return_X_y=True, as_frame=True)
    diabetes = RandomForestRegressor(n_estimators=50, max_depth=8, random_state=0).fit(D, t)
    B, c = datasets.load_breast_cancer(return_X_y=True, as_frame=True)
    cancer = HistGradientBoostingClassifier(random_state=0).fit(
        B, datasets.load_breast_cancer().target_names[c]
    )
    P, d = datasets.load_digits(return_X_y=True, as_frame=True)
    digits = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0)
    digits.fit(P.to_numpy(np.float32), d.to_numpy())
    return {
        "iris": (iris, X),
        "diabetes": (diabetes, D),
        "breast-cancer": (cancer, B),
        "digits": (digits, P.astype(float)),
    }


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Result]]:
    """One home with the demo installed, twice."""
    home = tmp_path_factory.mktemp("demo") / "home"
    runner = CliRunner()
    results = [runner.invoke(cli, ["--home", str(home), "demo"]) for _ in range(2)]
    return home, results


def test_demo_registers_four_models_once(demo_home: tuple[Path, list[Result]], runner: CliRunner) -> None:
    home, (first, second) = demo_home
    ok(first)
    assert sorted(first.stdout.splitlines()) == [
        "registered demo model breast-cancer:1 (joblib)",
        "registered demo model diabetes:1 (skops)",
        "registered demo model digits:1 (onnx)",
        "registered demo model iris:1 (joblib)",
    ]
    assert ok(second).stdout.strip() == "demo models already registered"
    rows = json.loads(ok(runner.invoke(cli, ["--home", str(home), "models", "list", "--json"])).stdout)
    assert {(r["name"], r["versions"], r["latest"]) for r in rows} == {
        ("breast-cancer", 1, 1),
        ("diabetes", 1, 1),
        ("digits", 1, 1),
        ("iris", 1, 1),
    }


@pytest.fixture(scope="module")
def demo_models() -> dict[str, tuple[Any, pd.DataFrame]]:
    return _demo_models()


@pytest.mark.parametrize("name", ["iris", "diabetes", "breast-cancer", "digits"])
def test_demo_predictions_equal_the_recipe(
    demo_home: tuple[Path, list[Result]],
    demo_models: dict[str, tuple[Any, pd.DataFrame]],
    runner: CliRunner,
    tmp_path: Path,
    name: str,
) -> None:
    home, _ = demo_home
    model, X = demo_models[name]
    shown = json.loads(ok(runner.invoke(cli, ["--home", str(home), "models", "show", name])).stdout)
    example = shown["example"]
    assert example == {"instances": [rows_of(X.head(1))[0]]}

    rows = tmp_path / "example.json"
    rows.write_text(json.dumps(example))
    response = json.loads(
        ok(runner.invoke(cli, ["--home", str(home), "predict", name, "--input", str(rows)])).stdout
    )
    frame = X.head(1).astype(np.float32) if name == "digits" else X.head(1)
    expected = model.predict(frame.to_numpy() if name == "digits" else frame)
    if name == "diabetes":
        np.testing.assert_allclose(response["predictions"], expected, rtol=1e-9)
    else:
        assert response["predictions"] == expected.tolist()

    # Beyond the example: 50 rows spread over the data set.
    sample = X.iloc[np.linspace(0, len(X) - 1, 50).astype(int)]
    rows.write_text(json.dumps(rows_of(sample)))
    response = json.loads(
        ok(runner.invoke(cli, ["--home", str(home), "predict", name, "--input", str(rows)])).stdout
    )
    inputs = sample.to_numpy(np.float32) if name == "digits" else sample
    expected = model.predict(inputs)
    if name == "diabetes":
        np.testing.assert_allclose(response["predictions"], expected, rtol=1e-9)
    else:
        assert response["predictions"] == expected.tolist()
    assert len(set(np.asarray(expected).tolist())) > 1  # the rows tell classes (or values) apart


# -- convert and set-fast --------------------------------------------------------------------


def show(wharf: Any, ref: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(ok(wharf("models", "show", ref)).stdout)
    return shown


def test_convert_prints_the_parity_table(wharf: Any, iris_file: Path) -> None:
    registered(wharf, iris_file)

    result = ok(wharf("convert", "iris:1", "--to", "onnx"))

    lines = result.stdout.splitlines()
    assert lines[0] == "registered iris:2 (onnx), converted from iris:1"
    assert lines[1] == "parity on 500 generated rows: passed"
    assert lines[2].split() == ["labels", "equal", "100.00%"]
    assert lines[3].startswith("  max |difference|   ")
    assert lines[4].startswith("  max relative diff  ") and lines[4].endswith("(allowed 0.0001)")
    assert lines[5].split() == ["latency", "1", "row", "500", "rows"]
    for line, side in zip(lines[6:8], ["source joblib", "converted onnx"], strict=True):
        assert side in line and line.count("ms") == 2, line
    assert "--force" not in result.stdout
    shown = show(wharf, "iris:2")
    assert shown["format"] == "onnx"
    assert shown["lineage"]["source_version"] == 1
    assert shown["parity"]["passed"] is True
    assert [r["latest"] for r in json.loads(ok(wharf("models", "list", "--json")).stdout)] == [2]


@pytest.mark.parametrize("kind", ["csv", "json-rows", "json-instances"])
def test_convert_with_a_sample_file(
    wharf: Any, tmp_path: Path, iris_file: Path, iris: tuple[Pipeline, pd.DataFrame], kind: str
) -> None:
    _, X = iris
    sample = X.iloc[::10]
    registered(wharf, iris_file)
    path = tmp_path / ("rows.csv" if kind == "csv" else "rows.json")
    if kind == "csv":
        sample.to_csv(path, index=False)
    else:
        rows = rows_of(sample)
        path.write_text(json.dumps(rows if kind == "json-rows" else {"instances": rows}))

    result = ok(wharf("convert", "iris:1", "--to", "onnx", "--sample", str(path)))

    assert "parity on 15 given rows: passed" in result.stdout
    parity = show(wharf, "iris:2")["parity"]
    assert (parity["sample"], parity["rows"], parity["seed"]) == ("given", 15, None)


def test_convert_with_a_dataframe_split_sample(
    wharf: Any, tmp_path: Path, iris_file: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    _, X = iris
    sample = X.iloc[::10]
    registered(wharf, iris_file)
    path = tmp_path / "rows.json"
    split = {"columns": list(sample.columns), "data": sample.to_numpy().tolist()}
    path.write_text(json.dumps({"dataframe_split": split}))  # a body wharf predict --input takes

    result = wharf("convert", "iris:1", "--to", "onnx", "--sample", str(path))

    # Either the rows are used, or the file is refused; never a report on other rows.
    assert "generated rows" not in result.output
    if result.exit_code == 0:
        assert show(wharf, "iris:2")["parity"]["sample"] == "given"


def test_convert_json_seed_and_tolerance(wharf: Any, iris_file: Path) -> None:
    registered(wharf, iris_file)
    result = ok(
        wharf(
            "convert", "iris:1", "--to", "onnx", "--seed", "3", "--labels", "0.5", "--rtol", "0.01", "--json"
        )
    )
    made = json.loads(result.stdout)
    assert (made["version"], made["format"]) == (2, "onnx")
    assert (made["parity"]["sample"], made["parity"]["seed"]) == ("generated", 3)
    assert made["parity"]["tolerance"] == {"labels": 0.5, "rtol": 0.01}


def test_set_fast_then_predict_through_the_twin(
    wharf: Any, tmp_path: Path, iris_file: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    model, X = iris
    sample = X.iloc[::10]
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(rows_of(sample)))
    registered(wharf, iris_file)
    ok(wharf("convert", "iris:1", "--to", "onnx"))

    assert ok(wharf("models", "set-fast", "iris:1")).stdout.strip() == "iris:1 is answered by v2 (onnx)"
    assert show(wharf, "iris:1")["answered_by"] == 2
    fast = json.loads(ok(wharf("predict", "iris:1", "--input", str(rows), "--probabilities")).stdout)
    assert (fast["version"], fast["answered_by"]) == (1, 2)
    assert fast["predictions"] == model.predict(sample).tolist()
    np.testing.assert_allclose(fast["probabilities"], model.predict_proba(sample), rtol=0, atol=1e-4)

    assert ok(wharf("models", "set-fast", "iris:1", "--off")).stdout.strip() == "iris:1 answers itself"
    assert show(wharf, "iris:1")["answered_by"] is None
    itself = json.loads(ok(wharf("predict", "iris:1", "--input", str(rows), "--probabilities")).stdout)
    assert "answered_by" not in itself
    assert itself["predictions"] == fast["predictions"]
    np.testing.assert_allclose(itself["probabilities"], model.predict_proba(sample), rtol=1e-12)

    assert ok(wharf("models", "set-fast", "iris:1", "--twin", "2")).stdout.strip() == (
        "iris:1 is answered by v2 (onnx)"
    )


@pytest.mark.parametrize("args", [("convert", "iris", "--to", "onnx"), ("models", "set-fast", "iris")])
def test_convert_and_set_fast_need_a_version(wharf: Any, iris_file: Path, args: tuple[str, ...]) -> None:
    registered(wharf, iris_file)
    failed(wharf(*args), InvalidInput.exit_code, "Name the version, as in iris:3.")
    assert [r["versions"] for r in json.loads(ok(wharf("models", "list", "--json")).stdout)] == [1]


def test_set_fast_without_a_verified_twin(wharf: Any, iris_file: Path) -> None:
    registered(wharf, iris_file)
    failed(
        wharf("models", "set-fast", "iris:1"),
        Conflict.exit_code,
        "iris:1 has no ONNX conversion that passed its parity check (conversions: none); "
        "run: wharf convert iris:1 --to onnx",
    )


def test_parity_failure_prints_the_report_and_registers_nothing(wharf: Any, iris_file: Path) -> None:
    registered(wharf, iris_file)

    # No tolerance at all: the graph's float32 arithmetic differs from scikit-learn's float64.
    result = wharf("convert", "iris:1", "--to", "onnx", "--rtol", "0")

    assert result.exit_code == ParityFailed.exit_code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    report, _, error = result.stderr.partition("Error: ")
    assert report.startswith("parity on 500 generated rows: FAILED\n")
    assert "labels equal       100.00%" in report
    assert "(allowed 0)" in report
    assert error.startswith("The onnx conversion of iris:1 answers differently from its source")
    assert "Nothing was registered" in error
    assert [r["versions"] for r in json.loads(ok(wharf("models", "list", "--json")).stdout)] == [1]

    forced = ok(wharf("convert", "iris:1", "--to", "onnx", "--rtol", "0", "--force"))
    assert "registered iris:2 (onnx), converted from iris:1" in forced.stdout
    assert "parity on 500 generated rows: FAILED" in forced.stdout
    assert "registered although outside the tolerance (--force): never used as a fast twin" in forced.stdout
    failed(
        wharf("models", "set-fast", "iris:1"), Conflict.exit_code, "v2 (onnx, forced past its parity check)"
    )
