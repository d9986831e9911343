"""A throw-away PKI for TLS tests, made with the openssl command (EC P-256, valid one day).

``make_pki(directory)`` writes a CA, a server certificate for ``SERVER_NAME`` and a
client certificate, both signed by that CA, and a ``rogue`` client certificate signed
by a second CA the listener does not trust.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SERVER_NAME = "journalban.example.net"  # the name the shipped remote snippet expects


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _key_args(directory: Path, name: str) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.pem")]


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", *_key_args(directory, name), "-subj", f"/CN={name}")


def _signed(directory: Path, name: str, ca: str, *extensions: str) -> None:
    _openssl("req", "-x509", *_key_args(directory, name), "-subj", f"/CN={name}",
             "-CA", str(directory / f"{ca}.pem"), "-CAkey", str(directory / f"{ca}.key"),
             *(arg for extension in extensions for arg in ("-addext", extension)))


def make_pki(directory: Path) -> dict[str, Path]:
    """Files by name: ca.pem, server.pem/.key, client.pem/.key, rogue.pem/.key."""
    directory.mkdir(parents=True, exist_ok=True)
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    leaf = ("basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature")
    _signed(directory, "server", "ca", f"subjectAltName=DNS:{SERVER_NAME}", "extendedKeyUsage=serverAuth", *leaf)
    _signed(directory, "client", "ca", "subjectAltName=DNS:client.example.net", "extendedKeyUsage=clientAuth", *leaf)
    _signed(directory, "rogue", "other-ca", "subjectAltName=DNS:rogue.example.net", "extendedKeyUsage=clientAuth",
            *leaf)
    return {path.name: path for path in directory.iterdir()}
