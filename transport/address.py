"""Where the broker is: ``CORELINE_MQTT_URL`` (DESIGN §10, normative),
``mqtt://user:pass@host:port`` or ``mqtts://`` for TLS, with certificate paths given
separately.  A plain value: the client applies it to its connection."""

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from schemas.urls import redact


class MqttUrlError(ValueError):
    """The broker URL cannot be used; the message says what would work."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def parse(cls, url: str) -> "BrokerAddress":
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise MqttUrlError(
                f"unsupported broker URL {redact(url)!r}: use mqtt://user:password@host:1883 "
                "or mqtts://user:password@host:8883"
            )
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError as error:
            raise MqttUrlError(f"broker URL {redact(url)!r} has an invalid port") from error
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def with_certificates(
        self, ca_file: Path | None, cert_file: Path | None, key_file: Path | None
    ) -> "BrokerAddress":
        """Add TLS files; a client certificate needs its key (mutual TLS)."""
        if (cert_file is None) != (key_file is None):
            raise MqttUrlError("a client certificate and its key go together: give both or neither")
        for path in (ca_file, cert_file, key_file):
            if path is not None and not path.is_file():
                raise MqttUrlError(f"TLS file not found: {path}")
        return BrokerAddress(
            self.host,
            self.port,
            self.tls,
            self.username,
            self.password,
            ca_file,
            cert_file,
            key_file,
        )
