"""The fuzz run's tally, printed at the end of the session: cases sent, and those failing a check.

``WHARF_FUZZ_MIN_CASES`` (``make fuzz``) fails the session when fewer cases ran than it says.
"""

from __future__ import annotations

import sys

import pytest

MODULE = "test_openapi_fuzz"


def _tally() -> tuple[dict[str, int], dict[str, int], int] | None:
    module = sys.modules.get(MODULE)
    if module is None or not module.CASES:
        return None
    return module.CASES, module.FAILED, module.MIN_CASES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = _tally()
    if tally is None:
        return
    cases, failed, least = tally
    terminalreporter.section("fuzz")
    for label in sorted(failed):
        terminalreporter.write_line(f"{label}: {failed[label]} of {cases[label]} cases failed a check")
    total = sum(cases.values())
    terminalreporter.write_line(
        f"fuzz: {total} cases over {len(cases)} operations, {sum(failed.values())} failed a check "
        f"({len(failed)} operations)"
    )
    if total < least:
        terminalreporter.write_line(f"fuzz: fewer cases than the {least} asked for (WHARF_FUZZ_MIN_CASES)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    tally = _tally()
    if tally is not None and exitstatus == 0 and sum(tally[0].values()) < tally[2]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
