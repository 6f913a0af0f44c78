"""wharf: put a trained machine-learning model behind a fast, documented, production REST API."""

from wharf.app import create_app as create_app
from wharf.errors import WharfError as WharfError
from wharf.flask import Wharf as Wharf
from wharf.settings import Settings as Settings
from wharf.signature import Column as Column
from wharf.signature import Output as Output
from wharf.signature import Signature as Signature
from wharf.version import __version__ as __version__

__all__ = [
    "Column",
    "Output",
    "Settings",
    "Signature",
    "Wharf",
    "WharfError",
    "__version__",
    "create_app",
]
