"""The quick start's workload gets and verifies Google tokens from the demo world."""

from __future__ import annotations

import pytest

from scenarios import quickstart

pytestmark = pytest.mark.integration


def test_quickstart_workload_sees_its_identity() -> None:
    """google-auth, in a separate process, gets the Cloud Run instance's project and tokens."""
    result = quickstart.run()
    assert 0 == result.returncode, result.workload
    workload = result.workload
    assert "mesh-demo" == workload["default"]["project"]
    account = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"
    assert account == workload["access_token"]["service_account"]
    assert 3500 < workload["access_token"]["expires_in_s"] <= 3600
    id_token = workload["id_token"]
    assert id_token["verified"] is True
    assert account == id_token["email"]
    assert id_token["aud"].endswith("-uc.a.run.app")


def test_quickstart_as_another_instance() -> None:
    """Played as a VM of another project, the workload sees that project and account."""
    result = quickstart.run("outsider-vm")
    assert 0 == result.returncode, result.workload
    assert (
        "outsider@other-project.iam.gserviceaccount.com"
        == result.workload["access_token"]["service_account"]
    )
    assert "other-project" == result.workload["default"]["project"]
