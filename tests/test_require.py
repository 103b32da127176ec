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
    with pytest.raises(pytest.skip.Exception, match="tool X missing"):
        require(False, "tool X missing")


def test_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI: tool X missing"):
        require(False, "tool X missing")


def test_passes_when_the_condition_holds(monkeypatch):
    for ci in ("true", "false"):
        monkeypatch.setenv("CI", ci)
        assert require(True, "unused") is None
        assert require("/usr/bin/tool", "unused") is None      # a truthy path from shutil.which
