"""The identity rules and renewal schedules (pure)."""

from __future__ import annotations

import pytest

from krun.decisions import Decision, Source
from krun.discovery.addresses import ControlPlane
from krun.identity import plan as rules

TD = "mesh-demo.svc.id.goog"


class TestSchedules:
    def test_token_refreshed_at_80_percent(self) -> None:
        """A Kubernetes token is replaced once 80% of its lifetime has passed (kubelet's rule)."""
        assert 1000 + 2880 == rules.token_refresh_at(1000, 1000 + 3600)
        assert 1000 == rules.token_refresh_at(1000, 900), "an expired token is due now"

    def test_certificate_lifetime_counts_from_receipt(self) -> None:
        """A backdated notBefore (Istio's CA subtracts a minute) does not make renewal immediate."""
        received, lifetime = 10_000.0, 4.0
        due = rules.certificate_renew_at(
            received, received - 60, received + lifetime, share=0.5, jitter=0
        )

        assert received + 2 == due

    @pytest.mark.parametrize("jitter", [-1.0, 1.0])
    def test_certificate_jitter_and_margin(self, jitter: float) -> None:
        """A day's certificate renews at half its life ±5%, well before the 5-minute margin."""
        due = rules.certificate_renew_at(0, 0, 86400, share=0.5, jitter=jitter)

        assert 86400 * (0.5 + jitter * 0.05) == pytest.approx(due)

    def test_late_share_is_capped_by_the_margin(self) -> None:
        """Asking for renewal at 99.9% still renews 5 minutes before expiry."""
        assert 86400 - 300 == rules.certificate_renew_at(0, 0, 86400, share=0.999)


class TestDecisions:
    @pytest.mark.parametrize(
        ("kind", "oss", "expected", "source"),
        [
            (ControlPlane.EXPLICIT, None, TD, Source.DEFAULT),
            (ControlPlane.ISTIOD, Decision("1", Source.ENV, "OSS_ISTIO"), "istio-ca", Source.ENV),
            (
                ControlPlane.EXPLICIT,
                Decision("yes", Source.MESH_ENV, "OSS_ISTIO"),
                "istio-ca",
                Source.MESH_ENV,
            ),
            (ControlPlane.MANAGED, Decision("1", Source.ENV, "OSS_ISTIO"), TD, Source.DEFAULT),
        ],
    )
    def test_token_audience(
        self, kind: ControlPlane, oss: Decision[str] | None, expected: str, source: Source
    ) -> None:
        """The trust domain, or istio-ca with OSS_ISTIO; a managed control plane ignores it."""
        decided = rules.token_audience(kind, oss, TD)

        assert (expected, source) == (decided.value, decided.source)

    def test_oss_istio_layers_env_over_mesh_env(self) -> None:
        """OSS_ISTIO comes from env, else from mesh-env, else is unset."""
        assert Source.ENV == rules.oss_istio(True, {"OSS_ISTIO": "1"}).source  # type: ignore[union-attr]
        assert Source.MESH_ENV == rules.oss_istio(False, {"OSS_ISTIO": "1"}).source  # type: ignore[union-attr]
        assert rules.oss_istio(False, {}) is None

    def test_cluster_id(self) -> None:
        """ISTIO_META_CLUSTER_ID (env, mesh-env), else the original's cn-P-L-C."""
        mesh_env = {"ISTIO_META_CLUSTER_ID": "istio"}

        assert "east" == rules.cluster_id("east", mesh_env, "p", "l", "c").value
        assert ("istio", Source.MESH_ENV) == (
            rules.cluster_id(None, mesh_env, "p", "l", "c").value,
            rules.cluster_id(None, mesh_env, "p", "l", "c").source,
        )
        assert (
            "cn-p-us-central1-c-istio"
            == rules.cluster_id(None, {}, "p", "us-central1-c", "istio").value
        )

    @pytest.mark.parametrize(
        ("address", "env_value", "mesh_env", "expected"),
        [
            ("10.0.0.5:15012", None, {}, "istiod.istio-system.svc"),
            ("127.0.0.1:4321", None, {}, "127.0.0.1"),
            ("[fd00::5]:4321", None, {}, "fd00::5"),
            (
                "10.0.0.5:15012",
                None,
                {"ISTIOD_SAN": "istiod-asm.istio-system.svc"},
                "istiod-asm.istio-system.svc",
            ),
            ("10.0.0.5:15012", "mine.example", {"ISTIOD_SAN": "x"}, "mine.example"),
        ],
    )
    def test_ca_server_name(
        self, address: str, env_value: str | None, mesh_env: dict[str, str], expected: str
    ) -> None:
        """ISTIOD_SAN, else Istio's default on 15012, else the address's host."""
        assert expected == rules.ca_server_name(address, env_value, mesh_env).value

    def test_istiod_root_order(self) -> None:
        """mesh-env CAROOT_ISTIOD, then the ConfigMap, then the file, then system roots."""
        assert Source.MESH_ENV == rules.istiod_root({"CAROOT_ISTIOD": "A"}, "B", "C").source
        assert "B" == rules.istiod_root({}, "B", "C").value
        assert "C" == rules.istiod_root({}, None, "C").value
        assert rules.istiod_root({}, "  ", None).value is None

    def test_trust_bundle(self) -> None:
        """Every CAROOT* value (the original's bundle), else istiod's root, else the chain's end."""
        mesh_env = {"CAROOT_ISTIOD": "I\n", "CAROOT_CAS": "C", "XDS_ADDR": "x"}

        assert "C\nI\n" == rules.trust_bundle(mesh_env, "R", ["leaf", "root"])
        assert "R\n" == rules.trust_bundle({}, "R", ["leaf", "root"])
        assert "root\n" == rules.trust_bundle({}, None, ["leaf", "root"])
