"""The CI rules of tests/conftest.py: under ``CI`` missing shared data or a missing optional
package fails a test instead of skipping it, and Hypothesis runs derandomized."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from tests.conftest import in_ci, require_in_ci

CONFTEST = Path(__file__).with_name("conftest.py")


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("false", False),
                                                 ("1", True), ("true", True), ("yes", True)])
def test_in_ci_reads_the_ci_variable(monkeypatch: pytest.MonkeyPatch, value: str,
                                     expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_missing_data_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require_in_ci(Path("/data"), "no data") == Path("/data")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no data"):
        require_in_ci(None, "no data")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no data; CI must provide it"):
        require_in_ci(None, "no data")


def test_the_ci_profile_is_derandomized_and_loaded_under_ci() -> None:
    profile = settings.get_profile("ci")
    assert profile.derandomize and profile.database is None
    assert settings.default.derandomize is in_ci()


def _run_pytest(directory: Path, ci: bool) -> str:
    """The summary line of a pytest run over `directory` (plugins not autoloaded, collection
    errors not stopping the run), with or without CI set."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if ci:
        env["CI"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--continue-on-collection-errors", str(directory)],
        capture_output=True, text=True, env=env, cwd=directory, timeout=300)
    return done.stdout.strip().splitlines()[-1]


def test_a_skip_for_a_missing_package_fails_under_ci(tmp_path: Path) -> None:
    """The conftest turns `importorskip` of a package that is not installed into a failure
    under CI, in a test and at module level (a collection error); other skips stay skips, and
    without CI all stay skips."""
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_in_test.py").write_text(
        "import pytest\n\ndef test_x():\n    pytest.importorskip('no_such_package_x')\n\n"
        "def test_other_skip():\n    pytest.skip('an environmental reason')\n")
    (tmp_path / "test_at_module.py").write_text(
        "import pytest\npytest.importorskip('no_such_package_y')\n\ndef test_y():\n"
        "    pass\n")
    local = _run_pytest(tmp_path, ci=False)
    assert "3 skipped" in local and "failed" not in local and "error" not in local, local
    ci = _run_pytest(tmp_path, ci=True)
    assert "1 failed" in ci and "1 skipped" in ci and "1 error" in ci, ci
