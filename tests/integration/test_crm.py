"""The emulated Cloud Resource Manager against google-auth's REST session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from google.auth.credentials import Credentials as BaseCredentials
from google.auth.transport.requests import AuthorizedSession
from google.oauth2.credentials import Credentials

from emulator.testing import RunningEmulator
from emulator.world import Principal

pytestmark = pytest.mark.integration

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
FORTIO = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"
VM_DEFAULT = "vm-default@mesh-demo.iam.gserviceaccount.com"
NO_GRANTS = "no-grants@mesh-demo.iam.gserviceaccount.com"
OUTSIDER = "outsider@other-project.iam.gserviceaccount.com"
DENIED_V1 = "The caller does not have permission"


def session_for(emu: RunningEmulator, email: str) -> AuthorizedSession:
    """A session with a world token for `email` that shows errors as they come."""
    token = emu.world.tokens.issue_access_token(
        Principal.for_email(email), (CLOUD_PLATFORM,), now=emu.world.clock(), lifetime=3600
    )
    credentials: BaseCredentials = Credentials(token.token)  # type: ignore[no-untyped-call]
    session = AuthorizedSession(credentials, refresh_status_codes=())  # type: ignore[no-untyped-call]
    session.verify = str(emu.ca_file)
    return session


@pytest.fixture
def fortio(emu: RunningEmulator) -> Iterator[AuthorizedSession]:
    with session_for(emu, FORTIO) as session:
        yield session


def v1(emu: RunningEmulator, project: str) -> str:
    return f"{emu.url('cloudresourcemanager')}/v1/projects/{project}"


class TestV1:
    def test_project_fields(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """projects.get returns the labels and the number (as a string) krun reads."""
        response = fortio.get(v1(emu, "mesh-demo"))

        assert response.status_code == 200
        project = response.json()
        assert project["projectNumber"] == "123456789012"
        assert project["projectId"] == "mesh-demo"
        assert project["lifecycleState"] == "ACTIVE"
        assert project["labels"] == {"mesh-namespace": "fortio", "env": "demo"}
        assert project["name"]
        assert project["createTime"]

    def test_by_number(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """The project number names the same project."""
        response = fortio.get(v1(emu, "123456789012"))

        assert response.status_code == 200
        assert response.json()["projectId"] == "mesh-demo"

    def test_viewer_may_read(self, emu: RunningEmulator) -> None:
        """roles/viewer carries resourcemanager.projects.get too."""
        with session_for(emu, VM_DEFAULT) as session:
            assert session.get(v1(emu, "mesh-demo")).status_code == 200

    @pytest.mark.parametrize(
        ("email", "project"),
        [
            (NO_GRANTS, "mesh-demo"),
            (OUTSIDER, "mesh-demo"),
            (FORTIO, "other-project"),
            (FORTIO, "no-such-project"),
        ],
    )
    def test_denied_and_missing_look_the_same(
        self, emu: RunningEmulator, email: str, project: str
    ) -> None:
        """Without the permission, or for a project that does not exist, the answer is the same 403."""
        with session_for(emu, email) as session:
            response = session.get(v1(emu, project))

        assert response.status_code == 403
        assert response.json() == {
            "error": {
                "code": 403,
                "message": DENIED_V1,
                "errors": [{"message": DENIED_V1, "domain": "global", "reason": "forbidden"}],
                "status": "PERMISSION_DENIED",
            }
        }

    def test_no_token(self, emu: RunningEmulator) -> None:
        """Without credentials the answer is 401 UNAUTHENTICATED."""
        response = requests.get(v1(emu, "mesh-demo"), verify=str(emu.ca_file), timeout=10)

        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"
        assert response.json()["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"

    def test_expired_token(self, fresh_emu: RunningEmulator) -> None:
        """A token past its expiry in world time is a 401."""
        session = session_for(fresh_emu, FORTIO)
        fresh_emu.clock.advance(3601)

        response = session.get(v1(fresh_emu, "mesh-demo"))

        assert response.status_code == 401

    def test_bad_quota_project(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """An x-goog-user-project that does not exist is a 400."""
        response = fortio.get(v1(emu, "mesh-demo"), headers={"x-goog-user-project": "nope"})

        assert response.status_code == 400
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


class TestV3:
    def test_project_fields(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """v3 names the project by number and reports `state`."""
        response = fortio.get(f"{emu.url('cloudresourcemanager')}/v3/projects/mesh-demo")

        assert response.status_code == 200
        project = response.json()
        assert project["name"] == "projects/123456789012"
        assert project["projectId"] == "mesh-demo"
        assert project["state"] == "ACTIVE"
        assert project["displayName"]
        assert project["labels"]["mesh-namespace"] == "fortio"
        assert project["etag"].startswith('W/"')

    def test_denied(self, emu: RunningEmulator) -> None:
        """v3 says which permission was denied, and that the project may not exist."""
        with session_for(emu, NO_GRANTS) as session:
            response = session.get(f"{emu.url('cloudresourcemanager')}/v3/projects/mesh-demo")

        assert response.status_code == 403
        error = response.json()["error"]
        assert error["message"] == (
            "Permission 'resourcemanager.projects.get' denied on resource "
            "'//cloudresourcemanager.googleapis.com/projects/mesh-demo' (or it may not exist)."
        )
        assert error["details"][0]["reason"] == "IAM_PERMISSION_DENIED"
        assert error["details"][0]["metadata"] == {
            "permission": "resourcemanager.projects.get",
            "resource": "projects/mesh-demo",
        }
