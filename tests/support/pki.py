"""A throwaway fleet CA with a broker certificate and device client certificates,
made by the fleet CA's own code (``fleet_ca``), as the platform makes them."""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fleet_ca import (
    CheckedRequest,
    certificate_request,
    check_request,
    create_fleet_ca,
    public_key_of,
    write_new_key,
)
from fleet_ca import (
    FleetCa as Authority,
)

LIFETIME = timedelta(days=2)


@dataclass(frozen=True)
class CertificatePair:
    cert: Path
    key: Path


class FleetCa:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.authority: Authority = create_fleet_ca(directory, lifetime=LIFETIME)
        self.cert = directory / "ca.crt"
        self.key = directory / "ca.key"

    def issue(self, common_name: str, *, ip_address: str | None = None) -> CertificatePair:
        """A certificate for ``common_name``: a device's client certificate, or (with
        ``ip_address``) the broker's server certificate for that address."""
        key = self.directory / f"{common_name}.key"
        cert = self.directory / f"{common_name}.crt"
        pem = write_new_key(key)
        if ip_address is not None:
            issued = self.authority.issue_server(
                public_key_of(pem), [ip_address], lifetime=LIFETIME
            )
        else:
            request = check_request(certificate_request(pem, common_name), common_name)
            assert isinstance(request, CheckedRequest), request
            issued = self.authority.issue_device(request, lifetime=LIFETIME)
        cert.write_bytes(issued.pem)
        return CertificatePair(cert, key)
