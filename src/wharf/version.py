"""wharf's version, the single source read by packaging and by ``wharf --version``."""

__version__ = "0.1.0"
