"""shared.auth without a service: token verification against a JWKS file, and the role table."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.server
import json
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from deploy.local.identity import AUDIENCE, DevelopmentIdentity
from shared import auth
from shared.auth import Authenticator, Forbidden, Principal, Subject, Unauthenticated
from shared.settings import DEVELOPMENT_ISSUER
from tests import auth_helpers


@pytest.fixture(scope="module")
def authenticator() -> Authenticator:
    return Authenticator(DEVELOPMENT_ISSUER, AUDIENCE, auth_helpers.identity().jwks_url)


async def test_a_valid_token_gives_its_role_and_scope(authenticator: Authenticator) -> None:
    token = auth_helpers.token("kecamatan", city="Jakarta Pusat", kecamatan="Gambir")
    principal = await authenticator.authenticate(f"Bearer {token}")
    assert principal.role_name == "kecamatan" and principal.role is auth.ROLES["kecamatan"]
    assert (principal.city, principal.kecamatan) == ("Jakarta Pusat", "Gambir")
    assert (await authenticator.authenticate(f"bearer  {token} ")).role_name == "kecamatan"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": DEVELOPMENT_ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60}
    return {**claims, "role": "ops", **overrides}


def _header(header: dict[str, Any]) -> str:
    """A token whose header is ``header``, as a hostile client could write it (a 500 once)."""
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part(header)}.{part(_claims())}.c2ln"


def _signed(claims: dict[str, Any], identity: DevelopmentIdentity | None = None) -> str:
    identity = identity or auth_helpers.identity()
    return jwt.encode(claims, identity.key, algorithm="ES256", headers={"kid": identity.kid})


@pytest.mark.parametrize(
    ("case", "token"),
    [
        ("wrong issuer", lambda: _signed(_claims(iss="https://elsewhere.example/realms/x"))),
        ("wrong audience", lambda: _signed(_claims(aud="another-app"))),
        ("expired", lambda: _signed(_claims(exp=int(time.time()) - 120))),
        ("no exp", lambda: _signed({k: v for k, v in _claims().items() if k != "exp"})),
        ("no aud", lambda: _signed({k: v for k, v in _claims().items() if k != "aud"})),
        ("no iss", lambda: _signed({k: v for k, v in _claims().items() if k != "iss"})),
        ("not yet valid", lambda: _signed(_claims(nbf=int(time.time()) + 600))),
        ("tampered payload", lambda: _tampered()),
        ("HS256 with the public JWK as secret", lambda: _hs256()),
        ("alg none", lambda: jwt.encode(_claims(), None, algorithm="none")),
        ("malformed", lambda: "not.a.jwt"),
        ("alg a list", lambda: _header({"alg": ["ES256"], "typ": "JWT"})),
        ("alg an object", lambda: _header({"alg": {"a": 1}})),
        ("kid a list", lambda: _header({"alg": "ES256", "kid": ["k"]})),
        ("an ID token (Keycloak's typ ID)", lambda: _signed(_claims(typ="ID"))),
    ],
)
async def test_invalid_tokens_are_unauthenticated(
    authenticator: Authenticator, case: str, token: Any
) -> None:
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(f"Bearer {token()}")


async def test_a_token_of_another_key_is_unauthenticated(
    authenticator: Authenticator, tmp_path: Path
) -> None:
    """Another key under the issuer's key id (a forged signature), and under a key id the
    issuer never published."""
    other = DevelopmentIdentity.create(tmp_path)
    same_kid = DevelopmentIdentity(tmp_path, other.key, auth_helpers.identity().kid)
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(f"Bearer {_signed(_claims(), same_kid)}")
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(f"Bearer {_signed(_claims(), other)}")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwdw=="])
async def test_no_bearer_token_is_unauthenticated(
    authenticator: Authenticator, header: str | None
) -> None:
    with pytest.raises(Unauthenticated, match="bearer token is required"):
        await authenticator.authenticate(header)


def _tampered() -> str:
    header, _, signature = _signed(_claims(role="kota", city="Jakarta Barat")).split(".")
    payload = jwt.utils.base64url_encode(json.dumps(_claims()).encode()).decode()
    return f"{header}.{payload}.{signature}"


def _hs256() -> str:
    """The classic confusion: the public key used as an HMAC secret (signed by hand: PyJWT
    itself refuses to sign so)."""
    jwks = (auth_helpers.identity().directory / "jwks.json").read_bytes()
    header = {"alg": "HS256", "typ": "JWT", "kid": auth_helpers.identity().kid}
    signing_input = b".".join(
        jwt.utils.base64url_encode(json.dumps(part).encode()) for part in (header, _claims())
    )
    mac = hmac.new(jwks, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + jwt.utils.base64url_encode(mac)).decode()


async def test_no_issuer_configured_is_unavailable_not_open() -> None:
    with pytest.raises(auth.AuthUnavailable):
        await Authenticator("", AUDIENCE, "").authenticate(f"Bearer {auth_helpers.token()}")
    with pytest.raises(ValueError, match="issuer and an audience"):
        Authenticator("", AUDIENCE, auth_helpers.identity().jwks_url)


async def test_a_jwks_endpoint_over_http_is_read_with_pyjwts_client() -> None:
    """As a deployment reads its issuer's ``.../protocol/openid-connect/certs``."""
    directory = auth_helpers.identity().directory
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        over_http = Authenticator(DEVELOPMENT_ISSUER, AUDIENCE, url)
        assert isinstance(over_http.jwks, jwt.PyJWKClient)
        token = auth_helpers.token("dinas")
        assert (await over_http.authenticate(f"Bearer {token}")).role_name == "dinas"
        with pytest.raises(Unauthenticated):
            await over_http.authenticate(f"Bearer {_signed(_claims(aud='x'))}")
    finally:
        server.shutdown()
        server.server_close()


async def test_an_unreachable_jwks_is_unavailable(tmp_path: Path) -> None:
    missing = (tmp_path / "nothing.json").as_uri()
    with pytest.raises(auth.AuthUnavailable):
        await Authenticator(DEVELOPMENT_ISSUER, AUDIENCE, missing).authenticate(
            f"Bearer {auth_helpers.token()}"
        )


# ------------------------------------------------------------------------------ the table


def principal(role: str, **claims: Any) -> Principal:
    return auth.principal_from_claims({"sub": "someone", "role": role, **claims})


PRINCIPALS = {
    "ops": principal("ops"),
    "dinas": principal("dinas"),
    "kota": principal("kota", city="Jakarta Selatan"),
    "kecamatan": principal("kecamatan", city="Jakarta Selatan", kecamatan="Tebet"),
    "pendamping": principal("pendamping", pendamping_id="pdp-tebet-01"),
    "bank": principal("bank"),
    "participant": principal("participant", participant_id="p-1"),
}
EVERY: frozenset[auth.Resource] = frozenset(
    {
        "participant",
        "journey",
        "funnel",
        "submission",
        "coaching",
        "marketplace",
        "sales",
        "notifications",
        "docs",
    }
)
REGION = EVERY - {"submission", "notifications"}
READS: dict[str, frozenset[auth.Resource]] = {
    "ops": EVERY,
    "dinas": REGION,
    "kota": REGION,
    "kecamatan": REGION,
    "pendamping": frozenset({"participant", "journey", "funnel", "coaching", "docs"}),
    "bank": frozenset({"financing", "sales", "docs"}),
    "participant": EVERY - {"funnel", "submission"},
}


def test_the_table_covers_every_role_of_the_programme() -> None:
    assert set(auth.ROLES) == set(READS) == set(PRINCIPALS)
    assert {name for name, r in auth.ROLES.items() if r.personal_data} == {"ops", "participant"}


@pytest.mark.parametrize("role", sorted(READS))
@pytest.mark.parametrize("resource", sorted(EVERY))
def test_each_role_reads_exactly_its_resources(role: str, resource: auth.Resource) -> None:
    if resource in READS[role]:
        auth.authorize(PRINCIPALS[role], resource)
    else:
        with pytest.raises(Forbidden):
            auth.authorize(PRINCIPALS[role], resource)


HERE = Subject("p-1", "Jakarta Selatan", "Tebet", "pdp-tebet-01", financing_referred=True)
NEIGHBOUR = Subject("p-2", "Jakarta Selatan", "Setiabudi", "pdp-setiabudi-01")
ELSEWHERE = Subject("p-3", "Jakarta Barat", "Tebet", None)  # same kecamatan name, other city
SCOPE = {  # role -> the subjects in its scope
    "ops": {"p-1", "p-2", "p-3"},
    "dinas": {"p-1", "p-2", "p-3"},
    "kota": {"p-1", "p-2"},
    "kecamatan": {"p-1"},
    "pendamping": {"p-1"},
    "bank": {"p-1"},
    "participant": {"p-1"},
}


@pytest.mark.parametrize("role", sorted(SCOPE))
def test_each_role_reaches_exactly_its_participants(role: str) -> None:
    reached = {
        s.participant_id for s in (HERE, NEIGHBOUR, ELSEWHERE) if auth.in_scope(PRINCIPALS[role], s)
    }
    assert reached == SCOPE[role]


def test_a_subject_that_knows_no_region_is_outside_every_regional_scope() -> None:
    unknown = Subject("p-1")
    for role in ("kota", "kecamatan", "pendamping", "bank"):
        assert not auth.in_scope(PRINCIPALS[role], unknown), role
    assert auth.in_scope(PRINCIPALS["participant"], unknown)


def test_aggregates_are_narrowed_to_the_scope() -> None:
    assert auth.narrow(PRINCIPALS["ops"], {"city": "Jakarta Barat"}) == {}
    assert auth.narrow(PRINCIPALS["kota"], {}) == {"city": "Jakarta Selatan"}
    assert auth.narrow(PRINCIPALS["kota"], {"city": "Jakarta Selatan"}) == {
        "city": "Jakarta Selatan"
    }
    with pytest.raises(Forbidden, match="city outside"):
        auth.narrow(PRINCIPALS["kota"], {"city": "Jakarta Barat"})
    with pytest.raises(Forbidden, match="kecamatan outside"):
        auth.narrow(PRINCIPALS["kecamatan"], {"kecamatan": "Setiabudi"})
    assert auth.narrow(PRINCIPALS["pendamping"], {}) == {"pendamping_id": "pdp-tebet-01"}
    for role in ("bank", "participant"):
        with pytest.raises(Forbidden):
            auth.narrow(PRINCIPALS[role], {})


@pytest.mark.parametrize(
    ("role", "claims"),
    [
        ("kota", {}),
        ("kecamatan", {"city": "Jakarta Selatan"}),
        ("kecamatan", {"kecamatan": "Tebet"}),
        ("pendamping", {}),
        ("kota", {"city": 7}),
        ("superuser", {}),
        ("", {}),
    ],
)
def test_a_role_without_its_claims_or_unknown_is_forbidden(
    role: str, claims: dict[str, Any]
) -> None:
    with pytest.raises(Forbidden):
        auth.principal_from_claims({"sub": "x", "role": role, **claims})
    with pytest.raises(Forbidden):
        auth.principal_from_claims({"sub": "x"})


def test_a_participant_is_their_participant_id_claim_or_else_their_sub() -> None:
    assert principal("participant", participant_id="p-9").participant_id == "p-9"
    assert auth.principal_from_claims({"sub": "p-8", "role": "participant"}).participant_id == (
        "p-8"
    )
    assert principal("kota", city="Jakarta Pusat").participant_id is None  # sub is not an id


def test_personal_fields_are_withheld_from_roles_that_do_not_need_them() -> None:
    fields = frozenset({"full_name", "contact"})
    for role in auth.ROLES:
        doc: dict[str, Any] = {"full_name": "Siti", "contact": {"phone": "+62"}, "city": "X"}
        auth.withhold(PRINCIPALS[role], doc, fields)
        if role in ("ops", "participant"):
            assert doc["full_name"] == "Siti" and "withheld" not in doc
        else:
            assert doc == {"city": "X", "withheld": ["contact", "full_name"]}


async def test_a_keycloak_access_token_is_accepted(authenticator: Authenticator) -> None:
    """Keycloak marks its access tokens typ "Bearer" (its ID tokens "ID", refused above)."""
    principal = await authenticator.authenticate(f"Bearer {_signed(_claims(typ='Bearer'))}")
    assert principal.role_name == "ops"
