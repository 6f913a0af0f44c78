"""Alembic migrations of the metadata database, run by :mod:`wharf.storage.schema` (no alembic.ini).

``versions/`` holds one revision per schema change, numbered ``0001``, ``0002``, ...; see README.md
here for how to add one.
"""
