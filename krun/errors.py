"""Every error krun raises on purpose; anything else is a bug.

* KrunError                 - the root; `krun` prints the message and exits non-zero
  * ConfigError             - a bad setting; `.variable` names it
  * ServiceError            - a remote call failed; `.url` and `.status` (None: no answer)
    * DiscoveryError        - finding the platform, project, cluster or namespace failed
    * IdentityError         - obtaining a token failed
  * CertificateError        - a key, CSR or certificate file could not be made or written

Foreign exceptions (`OSError`, `ssl.SSLError`, `json.JSONDecodeError`) are translated
once, where they happen: `krun.http` for the network, `krun.certs.files` for the disk.
"""

from __future__ import annotations


class KrunError(Exception):
    """The root of krun's errors."""


class ConfigError(KrunError):
    """A setting is missing or malformed."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class ServiceError(KrunError):
    """A remote service failed or refused; `status` is None when it never answered."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class DiscoveryError(ServiceError):
    """The launcher could not find out where it runs or which mesh it joins."""


class IdentityError(ServiceError):
    """A token could not be obtained."""


class CertificateError(KrunError):
    """A key, CSR or certificate file could not be produced or written."""
