"""The session's token issuer: a development key pair and its JWKS in a temporary directory,
which every service under test checks bearer tokens against (``AUTH_*`` in the environment,
so services started in-process and as processes alike), and tokens minted with it.

:func:`configure_session` runs once, from ``tests/conftest.py``, before any settings are read.
The variables are set outright, not defaulted: tokens minted here verify only against this
session's JWKS.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from deploy.local.identity import DevelopmentIdentity

_identity: DevelopmentIdentity | None = None


def configure_session() -> DevelopmentIdentity:
    global _identity
    if _identity is None:
        directory = Path(tempfile.mkdtemp(prefix="jakpreneur-auth-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _identity = DevelopmentIdentity.create(directory)
        os.environ.update(_identity.env())
    return _identity


def identity() -> DevelopmentIdentity:
    return configure_session()


def token(role: str = "ops", **claims: Any) -> str:
    """A token of the session's issuer; ``claims`` add scope claims or override standard
    ones (``iss``, ``aud``, ``exp``, ...)."""
    return identity().mint(role, **claims)


def bearer(role: str = "ops", **claims: Any) -> dict[str, str]:
    """The ``Authorization`` header of such a token, for httpx's ``headers=``."""
    return {"Authorization": f"Bearer {token(role, **claims)}"}


def ops() -> dict[str, str]:
    """Headers of an ops token: what the existing tests read the services with."""
    return bearer("ops")
