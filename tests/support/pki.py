"""A throwaway fleet CA with a broker certificate and device client certificates,
made with the ``openssl`` command line (as an operator would)."""

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CertificatePair:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _new_key(name: str, directory: Path) -> Path:
    key = directory / f"{name}.key"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key), cwd=directory)
    return key


class FleetCa:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = _new_key("ca", directory)
        self.cert = directory / "ca.crt"
        _openssl(
            "req", "-x509", "-new", "-key", str(self.key), "-out", str(self.cert),
            "-days", "2", "-subj", "/CN=Coreline test fleet CA", cwd=directory,
        )  # fmt: skip

    def issue(self, common_name: str, *, ip_address: str | None = None) -> CertificatePair:
        """A certificate for ``common_name`` (a device id, or the broker's address)."""
        key = _new_key(common_name, self.directory)
        request = self.directory / f"{common_name}.csr"
        cert = self.directory / f"{common_name}.crt"
        _openssl(
            "req", "-new", "-key", str(key), "-out", str(request), "-subj", f"/CN={common_name}",
            cwd=self.directory,
        )  # fmt: skip
        extensions = self.directory / f"{common_name}.ext"
        extensions.write_text(f"subjectAltName=IP:{ip_address}\n" if ip_address else "")
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions),
            cwd=self.directory,
        )  # fmt: skip
        return CertificatePair(cert, key)
