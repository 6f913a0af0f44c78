"""``python -m wharf``: the same as the ``wharf`` command."""

from wharf.cli import main

main()
