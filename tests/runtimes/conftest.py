"""Fixtures of the runtime tests: the tiny real models of :mod:`models`, trained once a session."""

from __future__ import annotations

import pytest

from models import CaseBook


@pytest.fixture(scope="session")
def cases(tmp_path_factory: pytest.TempPathFactory) -> CaseBook:
    """Every case of :data:`models.BUILDERS` by name, each trained on first use."""
    return CaseBook(tmp_path_factory.mktemp("models"))
