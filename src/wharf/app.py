"""The application factory of the standalone wharf server."""

from __future__ import annotations

from flask import Flask

from wharf.flask import Wharf
from wharf.http import problems
from wharf.settings import Settings


def create_app(settings: Settings | None = None, *, preload: bool = True, warm: bool = True) -> Flask:
    """A Flask application serving wharf's API at the root.

    :param settings: default: read from ``WHARF_*`` variables and the config file.
    :param preload: load the served models before returning.
    :param warm: predict once with each loaded model (off where the process will fork).
    """
    app = Flask("wharf", static_folder=None)
    problems.register(app)  # unknown routes and methods answer problem+json too
    Wharf(app, settings or Settings(), preload=preload, warm=warm, observe_app=True, direct_predict=True)
    return app
