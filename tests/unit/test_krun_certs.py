"""Workload keys, CSRs, certificate files and the renewal schedule."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from krun.certs import rotation
from krun.certs.files import Material, make_dirs, plan, write_all, write_atomic
from krun.certs.keys import generate_key, make_csr, private_key_pem
from krun.config import KeyType
from krun.errors import CertificateError

SPIFFE = "spiffe://mesh-demo.svc.id.goog/ns/fortio/sa/default"


def spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


@pytest.mark.parametrize(
    ("key_type", "kind"),
    [(KeyType.EC_P256, ec.EllipticCurvePrivateKey), (KeyType.RSA_2048, rsa.RSAPrivateKey)],
)
def test_csr_carries_the_spiffe_id_as_its_only_san(key_type: KeyType, kind: type) -> None:
    """The CSR is signed by the key and names the workload's SPIFFE id, nothing else."""
    key = generate_key(key_type)

    csr = x509.load_pem_x509_csr(
        make_csr(key, spiffe_id=SPIFFE, trust_domain="mesh-demo.svc.id.goog")
    )

    assert isinstance(key, kind)
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [SPIFFE] == san.get_values_for_type(x509.UniformResourceIdentifier)
    assert [] == san.get_values_for_type(x509.DNSName)
    assert spki(csr.public_key()) == spki(key.public_key())


def test_default_key_is_p256_in_pkcs8() -> None:
    """EC P-256 by default, written as unencrypted PKCS#8."""
    key = generate_key()
    pem = private_key_pem(key)

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert "secp256r1" == key.curve.name
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert spki(serialization.load_pem_private_key(pem, None).public_key()) == spki(
        key.public_key()
    )


def test_csr_refuses_a_non_spiffe_id() -> None:
    """Only SPIFFE ids go into the SAN."""
    with pytest.raises(CertificateError, match="not a SPIFFE id"):
        make_csr(generate_key(), spiffe_id="fortio", trust_domain="td")


MATERIAL = Material(chain=b"CHAIN\n", key=b"KEY\n", roots=b"ROOTS\n")
EXPECTED = {
    "etc/certs/cert-chain.pem": (b"CHAIN\n", 0o644),
    "etc/certs/key.pem": (b"KEY\n", 0o600),
    "etc/certs/root-cert.pem": (b"ROOTS\n", 0o644),
    "var/run/secrets/istio/root-cert.pem": (b"ROOTS\n", 0o644),
    "var/run/secrets/workload-spiffe-credentials/certificates.pem": (b"CHAIN\n", 0o644),
    "var/run/secrets/workload-spiffe-credentials/private_key.pem": (b"KEY\n", 0o600),
    "var/run/secrets/workload-spiffe-credentials/ca_certificates.pem": (b"ROOTS\n", 0o644),
}


def test_files_land_in_both_layouts_with_modes(tmp_path: Path) -> None:
    """Istio and GKE layouts under the base dir: keys 0600, the rest 0644, directories 0755."""
    old = os.umask(0o077)
    try:
        write_all(MATERIAL, plan(tmp_path, proxy_uid=1337, proxy_gid=1337), as_root=False)
    finally:
        os.umask(old)

    written = {
        str(p.relative_to(tmp_path)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in tmp_path.rglob("*")
        if p.is_file()
    }
    assert EXPECTED == written
    directories = {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*") if p.is_dir()}
    assert {0o755} == directories


def test_keys_are_given_to_the_proxy_only_as_root(tmp_path: Path) -> None:
    """As root, private keys are chowned to the proxy uid/gid; certificates are not; otherwise nothing is."""
    calls: list[tuple[int, int]] = []

    def chown(fd: int, uid: int, gid: int) -> None:
        calls.append((uid, gid))

    files = plan(tmp_path, proxy_uid=1337, proxy_gid=1338)
    write_all(MATERIAL, files, as_root=True, chown=chown)
    write_all(MATERIAL, files, as_root=False, chown=chown)

    assert [(1337, 1338), (1337, 1338)] == calls


def test_real_ownership_follows_the_running_user(tmp_path: Path) -> None:
    """With the real chown, a key belongs to the proxy when krun is root, else to krun's user."""
    write_all(MATERIAL, plan(tmp_path, proxy_uid=1337, proxy_gid=1337))

    key = tmp_path / "etc/certs/key.pem"
    chain = tmp_path / "etc/certs/cert-chain.pem"
    expected = 1337 if os.geteuid() == 0 else os.geteuid()
    assert expected == key.stat().st_uid
    assert os.geteuid() == chain.stat().st_uid


def test_atomic_write_replaces_without_leftovers(tmp_path: Path) -> None:
    """A rewrite swaps the whole file in one rename and leaves no temporary file."""
    target = tmp_path / "a" / "b.pem"
    write_atomic(target, b"old", mode=0o644)
    inode = target.stat().st_ino

    write_atomic(target, b"new", mode=0o600)

    assert b"new" == target.read_bytes()
    assert inode != target.stat().st_ino
    assert 0o600 == stat.S_IMODE(target.stat().st_mode)
    assert ["b.pem"] == [p.name for p in target.parent.iterdir()]


def test_failed_write_is_a_certificate_error_and_leaves_the_old_file(tmp_path: Path) -> None:
    """A failure mid-write names the path, keeps the old content and removes the temporary."""
    target = tmp_path / "key.pem"
    write_atomic(target, b"old", mode=0o600)

    def refuse(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    with pytest.raises(CertificateError, match=r"key\.pem"):
        write_atomic(target, b"new", mode=0o600, owner=(1, 1), chown=refuse)

    assert b"old" == target.read_bytes()
    assert ["key.pem"] == [p.name for p in tmp_path.iterdir()]


def test_failed_set_replaces_nothing(tmp_path: Path) -> None:
    """A key that cannot be written leaves every old file, so no new chain sits beside an old key."""
    files = plan(tmp_path, proxy_uid=1337, proxy_gid=1337)
    write_all(MATERIAL, files, as_root=False)

    def refuse(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    fresh = Material(chain=b"NEW CHAIN\n", key=b"NEW KEY\n", roots=b"NEW ROOTS\n")
    with pytest.raises(CertificateError, match=r"key\.pem: Operation not permitted"):
        write_all(fresh, files, as_root=True, chown=refuse)

    written = {
        str(p.relative_to(tmp_path)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in tmp_path.rglob("*")
        if p.is_file()
    }
    assert EXPECTED == written


def test_directories_cannot_be_made_under_a_file(tmp_path: Path) -> None:
    """A path blocked by a file is a CertificateError naming it."""
    (tmp_path / "etc").write_text("not a directory")

    with pytest.raises(CertificateError, match="etc"):
        write_atomic(tmp_path / "etc" / "certs" / "key.pem", b"k", mode=0o600)


def test_make_dirs_is_idempotent(tmp_path: Path) -> None:
    """Creating existing directories is a no-op."""
    make_dirs(tmp_path / "x" / "y")
    make_dirs(tmp_path / "x" / "y")

    assert (tmp_path / "x" / "y").is_dir()


class TestRotation:
    DAY = 86400.0

    def test_half_life_by_default(self) -> None:
        """Without jitter a 24 h certificate is renewed after 12 h."""
        assert 1000 + self.DAY / 2 == rotation.renew_at(1000, 1000 + self.DAY)

    def test_jitter_moves_within_five_percent(self) -> None:
        """Jitter -1..1 moves the time by at most 5% of the lifetime."""
        early = rotation.renew_at(0, self.DAY, jitter=-1)
        late = rotation.renew_at(0, self.DAY, jitter=1)

        assert self.DAY * 0.45 == pytest.approx(early)
        assert self.DAY * 0.55 == pytest.approx(late)

    def test_never_later_than_five_minutes_before_expiry(self) -> None:
        """A late share is clamped to five minutes before expiry."""
        assert self.DAY - 300 == rotation.renew_at(0, self.DAY, share=0.999)

    def test_short_lifetime_keeps_its_share(self) -> None:
        """A 10 s certificate is renewed by half its life, not immediately nor at 9 s."""
        assert 5.0 == rotation.renew_at(0, 10, jitter=1)
        assert 4.5 == pytest.approx(rotation.renew_at(0, 10, jitter=-1))
        assert 5.0 == rotation.renew_at(0, 10, share=0.9)

    def test_delay_and_due(self) -> None:
        """The delay counts down to zero; a certificate past its renewal time is due."""
        assert 100.0 == rotation.delay(0, 0, 200)
        assert 0.0 == rotation.delay(150, 0, 200)
        assert not rotation.needs_renewal(99, 0, 200)
        assert rotation.needs_renewal(100, 0, 200)
        assert rotation.needs_renewal(10_000, 0, 200)

    @pytest.mark.parametrize(("share", "jitter"), [(0, 0), (1, 0), (0.5, 2)])
    def test_bad_parameters(self, share: float, jitter: float) -> None:
        """Shares outside (0, 1) and jitter outside [-1, 1] are refused."""
        with pytest.raises(ValueError, match="must be"):
            rotation.renew_at(0, 10, share=share, jitter=jitter)
