"""krun's settings: every variable parsed once, every bad value named."""

from __future__ import annotations

import pytest

from krun.config import InterceptionMode, KeyType, Settings
from krun.errors import ConfigError
from krun.meshurl import ClusterMesh


def test_empty_environment_gives_defaults() -> None:
    """Nothing set: documented defaults, nothing invented."""
    settings = Settings.from_env({})

    assert settings.mesh is None
    assert settings.base_dir == "/"
    assert settings.proxy_uid == 1337
    assert settings.key_type is KeyType.EC_P256
    assert settings.renew_at == 0.5
    assert settings.endpoints.metadata_host == "169.254.169.254"
    assert not settings.endpoints.metadata_host_explicit
    assert settings.endpoints.container == "https://container.googleapis.com"
    assert dict(settings.ports) == {}


def test_empty_values_count_as_unset() -> None:
    """An empty or blank value is the same as no variable (the original's rule)."""
    assert Settings.from_env(
        {"MESH": "", "PROJECT_ID": "  ", "PORT_http": ""}
    ) == Settings.from_env({})


def test_good_values_are_parsed() -> None:
    """Each kind of value lands typed in its field."""
    settings = Settings.from_env(
        {
            "MESH": "gke://mesh-demo",
            "WORKLOAD_NAMESPACE": "fortio",
            "PROJECT_NUMBER": "123",
            "GCE_METADATA_HOST": "127.0.0.1:8080",
            "KRUN_CONTAINER_ENDPOINT": "https://127.0.0.1:9/",
            "REQUESTS_CA_BUNDLE": "/ca.pem",
            "ISTIO_META_INTERCEPTION_MODE": "none",
            "OUTBOUND_IP_RANGES_INCLUDE": "10.0.0.0/8, 192.168.0.1",
            "OUTBOUND_PORTS_EXCLUDE": "22,15020",
            "PORT_http": "-",
            "PORT_grpc": "9090",
            "PORT_db": "db.local:5432",
            "PORT": "15009",
            "K8S_UID": "1000",
            "KRUN_PROXY_UID": "0",
            "KRUN_KEY_TYPE": "rsa-2048",
            "KRUN_CERT_RENEW_AT": "0.75",
            "XDS_ADDR": "-",
            "OSS_ISTIO": "1",
            "PROXY_CONFIG": "discoveryAddress: istiod.istio-system.svc:15012\nmeshId: m\n",
        }
    )

    assert settings.mesh == ClusterMesh(project="mesh-demo", mesh_clusters_only=False)
    assert settings.namespace == "fortio"
    assert settings.endpoints.metadata_host == "127.0.0.1:8080"
    assert settings.endpoints.metadata_host_explicit
    assert settings.endpoints.container == "https://127.0.0.1:9"
    assert settings.ca_file == "/ca.pem"
    assert settings.interception_mode is InterceptionMode.NONE
    assert settings.outbound_ip_ranges_include == ("10.0.0.0/8", "192.168.0.1/32")
    assert settings.outbound_ports_exclude == (22, 15020)
    assert dict(settings.ports) == {
        "http": "-",
        "grpc": "127.0.0.1:9090",
        "db": "db.local:5432",
    }
    assert settings.port == 15009
    assert settings.k8s_uid == 1000
    assert settings.proxy_uid == 0
    assert settings.key_type is KeyType.RSA_2048
    assert settings.renew_at == 0.75
    assert settings.oss_istio
    assert settings.proxy_config is not None
    assert settings.proxy_config.discovery_address == "istiod.istio-system.svc:15012"
    assert settings.explicit_xds_addr == "istiod.istio-system.svc:15012"


def test_proxy_config_json_is_read_and_kept_verbatim() -> None:
    """JSON ProxyConfig works too, and its text is kept for the agent."""
    text = '{"discoveryAddress": "10.0.0.1:15012"}'
    settings = Settings.from_env({"PROXY_CONFIG": text, "XDS_ADDR": "1.2.3.4:15012"})

    assert settings.proxy_config is not None
    assert settings.proxy_config.text == text
    assert settings.explicit_xds_addr == "10.0.0.1:15012"


BAD = {
    "unknown MESH": ({"MESH": "ftp://x"}, "MESH", "unknown form"),
    "MESH without https": ({"MESH": "http://example.com/mesh-env"}, "MESH", "must use https"),
    "PROXY_CONFIG not YAML": ({"PROXY_CONFIG": "a: [1"}, "PROXY_CONFIG", "not valid YAML or JSON"),
    "PROXY_CONFIG a list": (
        {"PROXY_CONFIG": "[1, 2]"},
        "PROXY_CONFIG",
        "expected a YAML or JSON mapping",
    ),
    "PROXY_CONFIG bad address": (
        {"PROXY_CONFIG": "discoveryAddress: nohost"},
        "PROXY_CONFIG",
        "not host:port",
    ),
    "PROXY_CONFIG address a number": (
        {"PROXY_CONFIG": "discoveryAddress: 15012"},
        "PROXY_CONFIG",
        "must be a host:port string",
    ),
    "PORT_ word": ({"PORT_grpc": "grpc"}, "PORT_grpc", "not a port (N) or host:port"),
    "PORT_ too big": ({"PORT_grpc": "70000"}, "PORT_grpc", "not a port"),
    "PORT_ dash not http": ({"PORT_grpc": "-"}, "PORT_grpc", "not a port"),
    "PORT_ no name": ({"PORT_": "80"}, "PORT_", "needs a name"),
    "PORT_ bad name": ({"PORT_a/b": "80"}, "PORT_a/b", "needs a name"),
    "PORT not a number": ({"PORT": "http"}, "PORT", "not a port number"),
    "CIDR garbage": (
        {"OUTBOUND_IP_RANGES_INCLUDE": "10.0.0.0/33"},
        "OUTBOUND_IP_RANGES_INCLUDE",
        "not a CIDR range",
    ),
    "CIDR host bits": (
        {"OUTBOUND_IP_RANGES_INCLUDE": "10.1.2.3/8"},
        "OUTBOUND_IP_RANGES_INCLUDE",
        "has host bits set",
    ),
    "CIDR empty entry": (
        {"OUTBOUND_IP_RANGES_INCLUDE": "10.0.0.0/8,,"},
        "OUTBOUND_IP_RANGES_INCLUDE",
        "empty entry",
    ),
    "ports exclude": ({"OUTBOUND_PORTS_EXCLUDE": "22,ssh"}, "OUTBOUND_PORTS_EXCLUDE", "not a port"),
    "interception mode": (
        {"ISTIO_META_INTERCEPTION_MODE": "magic"},
        "ISTIO_META_INTERCEPTION_MODE",
        "not NONE, REDIRECT or TPROXY",
    ),
    "project number": ({"PROJECT_NUMBER": "12a"}, "PROJECT_NUMBER", "not a number"),
    "project id": ({"PROJECT_ID": "Mesh_Demo"}, "PROJECT_ID", "not a Google Cloud project id"),
    "cluster location": ({"CLUSTER_LOCATION": "mars"}, "CLUSTER_LOCATION", "not a region or zone"),
    "namespace": (
        {"WORKLOAD_NAMESPACE": "Bad_NS"},
        "WORKLOAD_NAMESPACE",
        "not a Kubernetes namespace",
    ),
    "XDS_ADDR": ({"XDS_ADDR": "istiod"}, "XDS_ADDR", "not host:port"),
    "CA_ADDR port": ({"CA_ADDR": "ca:99999"}, "CA_ADDR", "not a port number"),
    "metadata host": ({"GCE_METADATA_HOST": "a b"}, "GCE_METADATA_HOST", "no valid host"),
    "endpoint": ({"KRUN_STS_ENDPOINT": "sts.local"}, "KRUN_STS_ENDPOINT", "not an http(s) URL"),
    "K8S_UID": ({"K8S_UID": "-1"}, "K8S_UID", "outside"),
    "proxy uid": ({"KRUN_PROXY_UID": "istio"}, "KRUN_PROXY_UID", "not an integer"),
    "key type": ({"KRUN_KEY_TYPE": "ec256"}, "KRUN_KEY_TYPE", "not one of ec-p256, rsa-2048"),
    "renew share": (
        {"KRUN_CERT_RENEW_AT": "1.5"},
        "KRUN_CERT_RENEW_AT",
        "strictly between 0 and 1",
    ),
    "renew word": ({"KRUN_CERT_RENEW_AT": "half"}, "KRUN_CERT_RENEW_AT", "not a number"),
    "NO_GCE_CHECK": ({"NO_GCE_CHECK": "maybe"}, "NO_GCE_CHECK", "not a boolean"),
    "CA_POOL": ({"CA_POOL": "pool"}, "CA_POOL", "projects/P/locations/L/caPools/POOL"),
    "impersonate": ({"KRUN_IMPERSONATE": "someone"}, "KRUN_IMPERSONATE", "not a service account"),
    "probe": ({"startupProbe.http": "localhost:8080"}, "startupProbe.http", "not an http(s) URL"),
    "log format": ({"KRUN_LOG_FORMAT": "xml"}, "KRUN_LOG_FORMAT", "not json or text"),
    "MESH vs CLUSTER_NAME": (
        {"MESH": "gke://mesh-demo/us-central1-c/istio", "CLUSTER_NAME": "plain"},
        "CLUSTER_NAME",
        "contradicts the cluster 'istio' named by MESH",
    ),
    "MESH vs CLUSTER_LOCATION": (
        {"MESH": "gke://mesh-demo/us-central1-c/istio", "CLUSTER_LOCATION": "europe-west1"},
        "CLUSTER_LOCATION",
        "contradicts the location",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_value_names_the_variable(case: str) -> None:
    """A malformed value stops parsing with the variable's name and what was expected."""
    environ, variable, expected = BAD[case]

    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)

    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert expected in str(caught.value)


def test_importing_krun_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from the mapping passed in, never from os.environ."""
    monkeypatch.setenv("MESH", "ftp://broken")
    monkeypatch.setenv("PROJECT_ID", "from-os-environ")

    settings = Settings.from_env({})

    assert settings.mesh is None
    assert settings.project_id is None
