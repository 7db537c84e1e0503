"""``jakpreneur token``: a token of the local stack's development issuer that the services'
authenticator accepts with the role and scope asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.identity import AUDIENCE, DevelopmentIdentity
from shared.auth import Authenticator
from shared.settings import DEVELOPMENT_ISSUER

CLI = Path(sys.executable).with_name("jakpreneur")


def jakpreneur(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JAKPRENEUR_RUN_DIR": str(run_dir)}
    return subprocess.run(
        [str(CLI), "token", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


async def test_a_minted_token_carries_its_role_and_scope(tmp_path: Path) -> None:
    identity = DevelopmentIdentity.create(tmp_path / "auth")  # as the stack's start does
    done = jakpreneur(tmp_path, "--role", "kota", "--city", "Jakarta Selatan", "--minutes", "5")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    checker = Authenticator(DEVELOPMENT_ISSUER, AUDIENCE, identity.jwks_url)
    principal = await checker.authenticate(f"Bearer {token}")
    assert (principal.role_name, principal.city) == ("kota", "Jakarta Selatan")
    claims = await checker.verify(token)
    assert 0 < claims["exp"] - claims["iat"] <= 5 * 60


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--role", "kota"], "needs the claims city"),
        (["--role", "kecamatan", "--city", "Jakarta Pusat"], "needs the claims kecamatan"),
        (["--role", "superuser"], "no role of this programme"),
    ],
)
def test_a_role_without_its_scope_is_refused(tmp_path: Path, args: list[str], says: str) -> None:
    DevelopmentIdentity.create(tmp_path / "auth")
    done = jakpreneur(tmp_path, *args)
    assert done.returncode == 2 and says in done.stderr and not done.stdout


def test_without_a_local_stack_it_says_so(tmp_path: Path) -> None:
    done = jakpreneur(tmp_path, "--role", "ops")
    assert done.returncode == 1 and "make up" in done.stderr and not done.stdout
