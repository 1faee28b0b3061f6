"""The `krun` command line."""

from __future__ import annotations

import json

import pytest

from krun import __version__, cli


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`krun --version` prints the version and exits 0."""
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"], {})

    assert 0 == caught.value.code
    assert f"krun {__version__}\n" == capsys.readouterr().out


def test_no_command_says_launching_is_not_implemented(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a subcommand krun explains that launching comes later, exit 2."""
    assert 2 == cli.main([], {})
    assert "no launch mode is implemented yet" in capsys.readouterr().err


def test_explain_off_google_cloud_fails_at_the_project_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With NO_GCE_CHECK and no project, explain exits 1 with JSON and one sentence, no network."""
    assert 1 == cli.main(["explain"], {"NO_GCE_CHECK": "true", "MESH_BASE_DIR": "/base"})

    out, err = capsys.readouterr()
    document = json.loads(out)
    assert ("project", False) == (document["failed_step"], document["ok"])
    assert {"value": "none", "source": "env", "why": "NO_GCE_CHECK is set"} == document[
        "decisions"
    ]["platform"]
    assert "/base/etc/certs/key.pem" == document["files"][1]["path"]
    assert err.startswith("krun explain: step 'project' failed: no project")
