"""A local stand-in for the province's OIDC provider: a development signing key, the JWKS the
services check tokens against, and tokens minted with it.

The local stack creates a fresh key pair under ``.run/auth/`` each time it starts (never in
git) and points the services' ``AUTH_JWKS_URL`` at ``.run/auth/jwks.json`` (a ``file://``
URL); ``jakpreneur token --role kota --city "Jakarta Selatan"`` mints a token with it. The
issuer is :data:`shared.settings.DEVELOPMENT_ISSUER`, which a service refuses outside
``JAKPRENEUR_ENV=development``, so a token of this key never opens a deployed service.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from shared.settings import DEVELOPMENT_ISSUER

AUDIENCE = "jakpreneur"
ALGORITHM = "ES256"
KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"
DEFAULT_TTL_S = 15 * 60  # short-lived, as an OIDC provider's access tokens are


@dataclass(frozen=True)
class DevelopmentIdentity:
    directory: Path
    key: ec.EllipticCurvePrivateKey
    kid: str

    @classmethod
    def create(cls, directory: Path) -> DevelopmentIdentity:
        """A new key pair in ``directory`` (the key readable by its owner only), and its JWKS;
        tokens of an earlier key stop working."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        kid = uuid.uuid4().hex[:16]
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_path = directory / KEY_FILE
        key_path.unlink(missing_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(pem)
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        jwk.update(kid=kid, alg=ALGORITHM, use="sig")
        partial = directory / f".{JWKS_FILE}.partial"
        partial.write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
        partial.replace(directory / JWKS_FILE)  # a service reading it sees all or nothing
        return cls(directory, key, kid)

    @classmethod
    def load(cls, directory: Path) -> DevelopmentIdentity:
        """The key a running local stack created (``FileNotFoundError`` when there is none)."""
        key = serialization.load_pem_private_key((directory / KEY_FILE).read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{directory / KEY_FILE} is not an EC key")
        jwks = json.loads((directory / JWKS_FILE).read_text())
        return cls(directory, key, str(jwks["keys"][0]["kid"]))

    @property
    def jwks_url(self) -> str:
        return (self.directory / JWKS_FILE).resolve().as_uri()

    def env(self) -> dict[str, str]:
        """The services' settings that make them accept this identity's tokens."""
        return {
            "AUTH_ISSUER": DEVELOPMENT_ISSUER,
            "AUTH_AUDIENCE": AUDIENCE,
            "AUTH_JWKS_URL": self.jwks_url,
        }

    def mint(self, role: str, ttl_s: float = DEFAULT_TTL_S, **claims: Any) -> str:
        """A token of ``role`` with the scope ``claims`` it needs (``city``, ``kecamatan``,
        ``pendamping_id``, ``participant_id``; see :mod:`shared.auth`). ``claims`` may also
        override the standard ones (``iss``, ``aud``, ``exp``, ``sub``), for tests."""
        now = int(time.time())
        payload = {
            "iss": DEVELOPMENT_ISSUER,
            "aud": AUDIENCE,
            "sub": claims.get("participant_id") or f"dev-{role}",
            "iat": now,
            "exp": now + int(ttl_s),
            "role": role,
            **{k: v for k, v in claims.items() if v is not None},
        }
        return jwt.encode(payload, self.key, algorithm=ALGORITHM, headers={"kid": self.kid})
