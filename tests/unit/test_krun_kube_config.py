"""krun's kubeconfig and in-cluster parsing (pure, plus files in a temp directory)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from krun.config import Settings
from krun.errors import ConfigError
from krun.kube.config import (
    ClientCertAuth,
    GoogleAuth,
    TokenAuth,
    TokenFileAuth,
    gke_context,
    in_cluster,
    kubeconfig_path,
    parse_kubeconfig,
)

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kubeconfig(user: str, *, context: str = "gke_proj-one_us-central1-c_istio") -> str:
    return f"""
apiVersion: v1
kind: Config
current-context: {context}
contexts:
  - name: other
    context: {{cluster: other, user: other}}
  - name: {context}
    context: {{cluster: c1, user: u1, namespace: fortio}}
clusters:
  - name: c1
    cluster: {{server: "https://10.0.0.1:6443/", certificate-authority-data: {b64(CA)}}}
users:
  - name: u1
    user: {user}
"""


class TestKubeconfig:
    def test_token_user_and_gke_context(self) -> None:
        """A token user, the CA from data, the context's namespace and its gke_ parts."""
        access = parse_kubeconfig(kubeconfig("{token: abc}"), origin="k")

        assert "https://10.0.0.1:6443" == access.server
        assert TokenAuth("abc") == access.auth
        assert CA == access.ca_pem
        assert ("fortio", "u1") == (access.namespace, access.user)
        assert ("proj-one", "us-central1-c", "istio") == access.gke
        assert "k (context gke_proj-one_us-central1-c_istio)" == access.origin

    def test_token_file_is_relative_to_the_kubeconfig(self) -> None:
        """tokenFile paths are resolved against the kubeconfig's directory, as kubectl does."""
        access = parse_kubeconfig(kubeconfig("{tokenFile: tok}"), origin="k", base=Path("/cfg"))

        assert TokenFileAuth("/cfg/tok") == access.auth

    def test_client_certificate_data_and_files(self) -> None:
        """Client certificates come inline (base64) or from files."""
        inline = parse_kubeconfig(
            kubeconfig(f"{{client-certificate-data: {b64('C')}, client-key-data: {b64('K')}}}"),
            origin="k",
        )
        files = parse_kubeconfig(
            kubeconfig("{client-certificate: c.pem, client-key: /abs/k.pem}"),
            origin="k",
            base=Path("/cfg"),
            read=lambda path: path.encode(),
        )

        assert ClientCertAuth(b"C", b"K") == inline.auth
        assert ClientCertAuth(b"/cfg/c.pem", b"/abs/k.pem") == files.auth

    @pytest.mark.parametrize(
        ("user", "expected"),
        [
            ("{auth-provider: {name: gcp}}", GoogleAuth()),
            ("{auth-provider: {name: gcp, config: {access-token: ya29.x}}}", GoogleAuth("ya29.x")),
            ("{exec: {command: gke-gcloud-auth-plugin, apiVersion: x}}", GoogleAuth()),
            (
                "{exec: {command: /usr/lib/google-cloud-sdk/bin/gke-gcloud-auth-plugin}}",
                GoogleAuth(),
            ),
        ],
    )
    def test_google_users_mean_a_google_access_token(self, user: str, expected: GoogleAuth) -> None:
        """The gcp auth provider and GKE's exec plugin both mean a Google access token."""
        assert expected == parse_kubeconfig(kubeconfig(user), origin="k").auth

    def test_other_context_names_are_not_gke(self) -> None:
        """Only gke_PROJECT_LOCATION_CLUSTER names a cluster."""
        assert gke_context("kind-kind") is None
        assert gke_context("gke_p_l") is None
        assert ("p", "l", "c_d") == gke_context("gke_p_l_c_d")

    @pytest.mark.parametrize(
        ("text", "field"),
        [
            ("[]", "(top level): must be a mapping, got list"),
            ("kind: Config", "current-context: required"),
            ("current-context: x\ncontexts: []", "current-context: names no entry of contexts"),
            (
                "current-context: x\ncontexts: [{name: x, context: {user: u}}]",
                "contexts[0].context.cluster: required",
            ),
            (
                "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: []",
                "contexts[0].context.cluster: names no entry of clusters ('c')",
            ),
            (
                (
                    "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                    "clusters: [{name: c, cluster: {server: 10.0.0.1}}]"
                ),
                "clusters[0].cluster.server: must be an https:// (or http://) URL",
            ),
            (
                (
                    "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                    "clusters: [{name: c, cluster: {server: 'https://a', "
                    "certificate-authority-data: '!!'}}]"
                ),
                "clusters[0].cluster.certificate-authority-data: is not base64",
            ),
            ("not: [valid", "not valid YAML or JSON"),
        ],
    )
    def test_bad_files_name_the_field(self, text: str, field: str) -> None:
        """Every malformed kubeconfig is a KUBECONFIG error naming the file and the field."""
        with pytest.raises(ConfigError) as caught:
            parse_kubeconfig(text, origin="/home/me/.kube/config")

        assert "KUBECONFIG" == caught.value.variable
        assert "/home/me/.kube/config" in str(caught.value)
        assert field in str(caught.value)

    @pytest.mark.parametrize(
        ("user", "field"),
        [
            ("{}", "users[0].user: no credentials"),
            ("{auth-provider: {name: oidc}}", "users[0].user.auth-provider.name: only gcp"),
            ("{exec: {command: aws-iam-authenticator}}", "users[0].user.exec.command: only"),
            (f"{{client-certificate-data: {b64('C')}}}", "needs both the certificate and the key"),
            ("{token: 5}", "users[0].user.token: must be a string, got int"),
        ],
    )
    def test_bad_users_name_the_field(self, user: str, field: str) -> None:
        """Unsupported or incomplete credentials name the user entry's field."""
        with pytest.raises(ConfigError, match="KUBECONFIG: k: ") as caught:
            parse_kubeconfig(kubeconfig(user), origin="k")

        assert field in str(caught.value)

    def test_unreadable_referenced_file_is_named(self) -> None:
        """A client-certificate path that cannot be read names the field and the path."""

        def missing(path: str) -> bytes:
            raise FileNotFoundError(2, "No such file or directory", path)

        with pytest.raises(ConfigError, match=r"client-certificate: cannot read c\.pem"):
            parse_kubeconfig(
                kubeconfig("{client-certificate: c.pem, client-key: k.pem}"),
                origin="k",
                read=missing,
            )


class TestSources:
    def test_kubeconfig_list_takes_the_first_existing_file(self) -> None:
        """KUBECONFIG=a:b uses the first file that exists; none existing is an error."""
        settings = Settings.from_env({"KUBECONFIG": "/a:/b"})

        assert "/b" == kubeconfig_path(settings, exists=lambda p: p == "/b")
        with pytest.raises(ConfigError, match="no such file: /a:/b"):
            kubeconfig_path(settings, exists=lambda p: False)

    def test_home_kube_config_only_when_present(self) -> None:
        """$HOME/.kube/config is used only if it exists; nothing set means no kubeconfig."""
        settings = Settings.from_env({"HOME": "/home/me"})

        assert "/home/me/.kube/config" == kubeconfig_path(settings, exists=lambda p: True)
        assert kubeconfig_path(settings, exists=lambda p: False) is None
        assert kubeconfig_path(Settings.from_env({}), exists=lambda p: True) is None

    def test_in_cluster_reads_the_service_account_files(self, tmp_path: Path) -> None:
        """In a pod: the service host and port, the token file, the CA and the namespace."""
        (tmp_path / "token").write_text("jwt")
        (tmp_path / "ca.crt").write_text(CA)
        (tmp_path / "namespace").write_text("fortio\n")
        settings = Settings.from_env(
            {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
        )

        access = in_cluster(settings, tmp_path)

        assert "https://[fd00::1]:6443" == access.server
        assert TokenFileAuth(str(tmp_path / "token")) == access.auth
        assert (str(tmp_path / "ca.crt"), "fortio") == (access.ca_file, access.namespace)

    def test_in_cluster_without_a_token_is_a_clear_error(self, tmp_path: Path) -> None:
        """A pod without its token (automount disabled) says which file is missing."""
        settings = Settings.from_env({"KUBERNETES_SERVICE_HOST": "10.0.0.1"})

        with pytest.raises(ConfigError, match="token is missing"):
            in_cluster(settings, tmp_path)
