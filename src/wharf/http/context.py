"""The services of the application answering the current request."""

from __future__ import annotations

from flask import current_app

from wharf.services import Services

NAME = "wharf"
"""Key of the services in ``app.extensions``, and the blueprint's name."""


def services() -> Services:
    return current_app.extensions[NAME]
