"""The admin key of this test run: made fresh at import, sent by the test clients."""

from __future__ import annotations

from wharf.services.security import new_key

ADMIN_KEY = new_key()[1]
