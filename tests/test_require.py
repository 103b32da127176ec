"""tests/conftest.py's ``require``: a missing tool, codec or file skips the test on a
developer machine and fails it in CI (``CI=true``), where a skip would pass silently."""

import pytest

from .conftest import require


@pytest.mark.parametrize("ci", [None, "false", "1"])
def test_skips_outside_ci(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    exc = _outcome(False)
    assert type(exc) is pytest.skip.Exception and "tool X missing" in str(exc), repr(exc)


def _outcome(condition):
    """The exception ``require`` raises, caught whatever it is (a skip escaping here would
    turn this test itself into a silent skip)."""
    try:
        require(condition, "tool X missing")
    except BaseException as exc:  # noqa: BLE001 - pytest's outcomes are BaseExceptions
        return exc
    return None


def test_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    exc = _outcome(False)
    assert type(exc) is pytest.fail.Exception, repr(exc)
    assert "required in CI: tool X missing" in str(exc)


def test_passes_when_the_condition_holds(monkeypatch):
    for ci in ("true", "false"):
        monkeypatch.setenv("CI", ci)
        assert _outcome(True) is None
        assert require(True, "unused") is None
        assert require("/usr/bin/tool", "unused") is None      # a truthy path from shutil.which
