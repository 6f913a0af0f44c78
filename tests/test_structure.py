"""The layers of DESIGN.md, held by parsing every module: what each layer may not import or read."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import wharf

PACKAGE = Path(wharf.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 500
"""STYLE.md: modules of 50-300 lines; past ~500, split along a concept."""

ML = (
    "sklearn",
    "numpy",
    "pandas",
    "scipy",
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "skops",
    "xgboost",
    "lightgbm",
    "joblib",
)
WEB = ("flask", "werkzeug", "granian")


@dataclass(frozen=True)
class Rule:
    layer: str
    """Folder (or module) under src/wharf the rule holds for."""
    banned: tuple[str, ...]
    """Top-level packages or dotted wharf modules it must not import, even lazily."""


RULES = [
    Rule(
        "runtimes",
        (
            *WEB,
            "sqlalchemy",
            "wharf.http",
            "wharf.services",
            "wharf.storage",
            "wharf.settings",
            "wharf.app",
            "wharf.flask",
            "wharf.cli",
            "wharf.server",
        ),
    ),
    Rule("http", ("sqlalchemy", *ML, "wharf.runtimes", "wharf.storage.metadata")),
    Rule("services", (*WEB, "wharf.http", "wharf.app", "wharf.flask", "wharf.cli", "wharf.server")),
    Rule("storage", (*WEB, *ML, "wharf.http", "wharf.services", "wharf.runtimes", "wharf.settings")),
    Rule("cli", ("sqlalchemy", *ML, "wharf.runtimes", "wharf.storage.metadata")),
]


def imported(tree: ast.AST, package: str) -> set[str]:
    """Every module ``tree`` imports, anywhere in it, with imports relative to ``package`` resolved."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def violations(source: str, package: str, banned: tuple[str, ...]) -> list[str]:
    names = imported(ast.parse(source), package)
    return sorted(n for n in names for b in banned if n == b or n.startswith(b + "."))


def package_of(path: Path) -> str:
    """The package a module's relative imports start from."""
    return ".".join(path.parent.relative_to(PACKAGE.parent).parts)


def in_layer(path: Path, layer: str) -> bool:
    relative = path.relative_to(PACKAGE)
    return str(relative) == layer or relative.parts[0] == layer


def test_every_layer_exists() -> None:
    for rule in RULES:
        assert any(in_layer(p, rule.layer) for p in MODULES), rule.layer


@pytest.mark.parametrize("rule", RULES, ids=[r.layer for r in RULES])
def test_layer_imports(rule: Rule) -> None:
    found = {}
    for path in MODULES:
        if in_layer(path, rule.layer):
            bad = violations(path.read_text(), package_of(path), rule.banned)
            if bad:
                found[str(path.relative_to(PACKAGE))] = bad
    assert found == {}, f"{rule.layer} imports what its layer must not"


def reads_environment(source: str) -> list[int]:
    """Lines reading or changing the process environment."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(
                a.name in ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv")
                for a in node.names
            ):
                lines.append(node.lineno)
    return lines


def test_only_settings_reads_the_environment() -> None:
    found = {
        str(path.relative_to(PACKAGE)): reads_environment(path.read_text())
        for path in MODULES
        if path != PACKAGE / "settings.py"
    }
    assert {k: v for k, v in found.items() if v} == {}
    assert reads_environment((PACKAGE / "settings.py").read_text())  # the one place that does


def test_modules_stay_small() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in MODULES}
    assert {k: n for k, n in sizes.items() if n > MAX_LINES} == {}


def test_every_module_has_a_docstring() -> None:
    documented = [p for p in MODULES if p.name != "__main__.py"]  # `python -m wharf`: two lines, no story
    missing = [
        str(p.relative_to(PACKAGE)) for p in documented if ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert missing == []


@pytest.mark.parametrize("layer", ["runtimes", "http", "services", "storage"])
def test_every_layer_states_its_rule(layer: str) -> None:
    docstring = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text())) or ""
    assert "Rule of this layer:" in docstring


# -- the checks themselves catch what they are meant to ---------------------------------------


@pytest.mark.parametrize(
    ("source", "banned", "expected"),
    [
        ("import flask", ("flask",), ["flask"]),
        ("from flask import request", ("flask",), ["flask", "flask.request"]),
        ("def f():\n    import sqlalchemy.orm\n", ("sqlalchemy",), ["sqlalchemy.orm"]),
        (
            "from ..services import registry",
            ("wharf.services",),
            ["wharf.services", "wharf.services.registry"],
        ),
        ("from . import base", ("wharf.http",), []),
        ("from .. import settings", ("wharf.settings",), ["wharf.settings"]),
        ("import importlib\nimportlib.import_module('pandas')", ("pandas",), ["pandas"]),
        ("import flaskish", ("flask",), []),
    ],
)
def test_the_import_check(source: str, banned: tuple[str, ...], expected: list[str]) -> None:
    assert violations(source, "wharf.runtimes", banned) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os\nport = os.environ['WHARF_PORT']", [2]),
        ("import os\nport = os.getenv('WHARF_PORT')", [2]),
        ("from os import environ", [1]),
        ("import os\npath = os.path.join('a', 'b')", []),
    ],
)
def test_the_environment_check(source: str, expected: list[int]) -> None:
    assert reads_environment(source) == expected
