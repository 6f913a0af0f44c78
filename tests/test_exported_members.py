"""The public API is exactly what ``wharf/__init__.py`` re-exports, pinned (as httpx pins its own)."""

from __future__ import annotations

import types

import wharf

PUBLIC = [
    "Column",
    "Output",
    "Settings",
    "Signature",
    "Wharf",
    "WharfError",
    "__version__",
    "create_app",
]


def test_all_imports_are_exported() -> None:
    included_private_members = ["__version__"]
    exported = sorted(
        member
        for member, value in vars(wharf).items()
        # Submodules appear as attributes once imported; they are not re-exports.
        if (not member.startswith("_") or member in included_private_members)
        and not isinstance(value, types.ModuleType)
    )
    assert wharf.__all__ == exported


def test_the_public_api_is_pinned() -> None:
    assert wharf.__all__ == PUBLIC


def test_every_export_resolves_to_its_home() -> None:
    from wharf.app import create_app
    from wharf.errors import WharfError
    from wharf.flask import Wharf
    from wharf.settings import Settings
    from wharf.signature import Column, Output, Signature
    from wharf.version import __version__

    homes = {
        "Column": Column,
        "Output": Output,
        "Settings": Settings,
        "Signature": Signature,
        "Wharf": Wharf,
        "WharfError": WharfError,
        "__version__": __version__,
        "create_app": create_app,
    }
    assert {name: getattr(wharf, name) for name in wharf.__all__} == homes
