"""Who may read what over HTTP.

A caller presents a bearer JWT issued by the province's OIDC provider (e.g. Keycloak). It is
valid when its signature checks against a key of the issuer's JWKS (``AUTH_JWKS_URL``) and
its ``iss``, ``aud`` and ``exp`` are there and right (``AUTH_ISSUER``, ``AUTH_AUDIENCE``).

What it may then read is data, not code: :data:`ROLES` gives each role (the token's ``role``
claim) its **scope** (whose records) and the **resources** it reads (which endpoints), and
whether it sees personal fields. A scope is tested against the participant a request is
about (:data:`IN_SCOPE`) and narrows the aggregate reads (:data:`AGGREGATE_FILTER`). The
shared HTTP layer (:mod:`shared.http`) applies both to every route, so a service only says
which resource a route reads and how to find a participant's city, kecamatan and pendamping.

The claims a scope needs (:data:`SCOPE_CLAIMS`):

===========  ==========================================================================
role         claims besides ``iss``, ``aud``, ``exp``, ``sub`` and ``role``
===========  ==========================================================================
ops          -
dinas        -
kota         ``city`` (e.g. ``Jakarta Selatan``)
kecamatan    ``city`` and ``kecamatan``
pendamping   ``pendamping_id``: the mentor id of coaching's roster (``mentors.json``)
bank         -
participant  ``participant_id``, or else ``sub`` is the participant id
===========  ==========================================================================
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import jwt

# Asymmetric algorithms only: a shared-secret (HS*) or ``none`` token is never accepted.
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"})
LEEWAY_S = 10  # clock skew allowed between the issuer and us, on exp/nbf/iat
REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub")
ID_TOKEN_TYPES = frozenset({"id", "id_token"})  # the ``typ`` claim of an OIDC ID token

Resource = Literal[
    "participant",  # the registry's participant record (personal fields inside)
    "journey",  # the registry's journey of one participant
    "funnel",  # the programme funnel and its dashboard: counts over many participants
    "submission",  # the registry's outcome of one submission (who owns a NIK, on a duplicate)
    "coaching",  # training, mentoring and licensing of one participant
    "marketplace",  # curation, listing, export and financing of one participant
    "financing",  # one participant's financing referral and its decision, nothing else
    "sales",  # one participant's monthly sales ledger
    "notifications",  # the messages sent to one participant (their words and addresses)
    "erasure",  # a participant's erasure (UU 27/2022): request it (POST), follow it (GET)
    "docs",  # the AsyncAPI documentation
]
Scope = Literal["all", "province", "city", "kecamatan", "mentees", "referred", "self"]


@dataclass(frozen=True)
class Role:
    scope: Scope
    reads: frozenset[Resource]
    personal_data: bool  # sees names, birth dates, phone numbers, e-mail addresses


EVERY_RESOURCE: frozenset[Resource] = frozenset(get_args(Resource))
_REGION_READS: frozenset[Resource] = frozenset(
    {"participant", "journey", "funnel", "coaching", "marketplace", "financing", "sales", "docs"}
)
# The one table of who reads what. Personal fields only to ops (support, who must be able
# to reach a participant) and to the participant themself; the offices work with counts
# and stages, a pendamping with their mentees' progress, the bank with a referral's
# financing data (the referral carries what Bank DKI needs; contact goes through ops).
ROLES: Mapping[str, Role] = {
    "ops": Role("all", EVERY_RESOURCE, personal_data=True),
    "dinas": Role("province", _REGION_READS, personal_data=False),
    "kota": Role("city", _REGION_READS, personal_data=False),
    "kecamatan": Role("kecamatan", _REGION_READS, personal_data=False),
    "pendamping": Role(
        "mentees",
        frozenset({"participant", "journey", "funnel", "coaching", "docs"}),
        personal_data=False,
    ),
    # the bank: a referral's financing and sales ledger, not its curation reviews or notes
    "bank": Role("referred", frozenset({"financing", "sales", "docs"}), personal_data=False),
    "participant": Role("self", EVERY_RESOURCE - {"funnel", "submission"}, personal_data=True),
}
SCOPE_CLAIMS: Mapping[Scope, tuple[str, ...]] = {
    "all": (),
    "province": (),  # DKI Jakarta: every participant (the registry takes DKI NIKs only)
    "city": ("city",),
    "kecamatan": ("city", "kecamatan"),
    "mentees": ("pendamping_id",),
    "referred": (),
    "self": ("participant_id",),
}


@dataclass(frozen=True)
class Principal:
    """Who is asking, from a verified token. ``subject`` (``sub``) is never logged: an
    identity provider may use an e-mail address for it."""

    subject: str
    role_name: str
    role: Role
    city: str | None = None
    kecamatan: str | None = None
    pendamping_id: str | None = None
    participant_id: str | None = None


@dataclass(frozen=True)
class Subject:
    """What a service knows of the participant a request is about, to test a scope with."""

    participant_id: str
    city: str | None = None
    kecamatan: str | None = None
    pendamping_id: str | None = None
    financing_referred: bool = False


IN_SCOPE: Mapping[Scope, Callable[[Principal, Subject], bool]] = {
    "all": lambda p, s: True,
    "province": lambda p, s: True,
    "city": lambda p, s: s.city is not None and s.city == p.city,
    "kecamatan": lambda p, s: (
        s.kecamatan is not None and (s.city, s.kecamatan) == (p.city, p.kecamatan)
    ),
    "mentees": lambda p, s: s.pendamping_id is not None and s.pendamping_id == p.pendamping_id,
    "referred": lambda p, s: s.financing_referred,
    "self": lambda p, s: s.participant_id == p.participant_id,
}
# Scopes decided on the participant id alone; the others need the Subject looked up.
BY_ID_ALONE: frozenset[Scope] = frozenset({"all", "province", "self"})
# The filter an aggregate read (the funnel) is held to. A scope without an entry reads no
# aggregates (a participant's or the bank's: counts over others are not theirs to see).
AGGREGATE_FILTER: Mapping[Scope, Callable[[Principal], dict[str, str]]] = {
    "all": lambda p: {},
    "province": lambda p: {},
    "city": lambda p: {"city": str(p.city)},
    "kecamatan": lambda p: {"city": str(p.city), "kecamatan": str(p.kecamatan)},
    "mentees": lambda p: {"pendamping_id": str(p.pendamping_id)},
}


class Unauthenticated(Exception):
    """No token, or one that is not valid: 401."""


class NoToken(Unauthenticated):
    """No bearer token at all (the 401's challenge then names no error, RFC 6750 3.1)."""


class Forbidden(Exception):
    """A valid token that does not reach what was asked: 403."""


class AuthUnavailable(Exception):
    """The issuer's keys cannot be fetched (or none are configured): 503, not the caller's
    fault."""


# ------------------------------------------------------------------------- the decisions


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The principal of verified claims; :class:`Forbidden` for an unknown role or one
    without the claims its scope needs."""

    def text(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and value else None

    role_name = text("role")
    role = ROLES.get(role_name or "")
    if role_name is None or role is None:
        raise Forbidden("the token carries no role of this programme")
    values = {
        "city": text("city"),
        "kecamatan": text("kecamatan"),
        "pendamping_id": text("pendamping_id"),
        "participant_id": text("participant_id") or (text("sub") if role.scope == "self" else None),
    }
    missing = [name for name in SCOPE_CLAIMS[role.scope] if values[name] is None]
    if missing:
        raise Forbidden(f"a {role_name} token needs the claims {', '.join(missing)}")
    return Principal(subject=str(claims["sub"]), role_name=role_name, role=role, **values)


def authorize(principal: Principal, resource: Resource) -> None:
    if resource not in principal.role.reads:
        raise Forbidden(f"the {principal.role_name} role does not read {resource}")


def needs_subject(principal: Principal) -> bool:
    return principal.role.scope not in BY_ID_ALONE


def in_scope(principal: Principal, subject: Subject) -> bool:
    return IN_SCOPE[principal.role.scope](principal, subject)


def narrow(principal: Principal, query: Mapping[str, str]) -> dict[str, str]:
    """The filters an aggregate read is held to: the scope's, which the query may repeat
    but not contradict (a kota officer asking for another city: :class:`Forbidden`)."""
    region = AGGREGATE_FILTER.get(principal.role.scope)
    if region is None:
        raise Forbidden(f"the {principal.role_name} role reads no aggregates")
    held = region(principal)
    for name, value in held.items():
        if query.get(name) not in (None, "", value):
            raise Forbidden(f"{name} outside the token's scope")
    return held


def withhold(principal: Principal, doc: dict[str, Any], personal: frozenset[str]) -> None:
    """Remove the ``personal`` fields from ``doc`` unless the role sees personal data; the
    document then lists what was withheld."""
    if principal.role.personal_data:
        return
    withheld = sorted(name for name in personal if doc.pop(name, None) is not None)
    if withheld:
        doc["withheld"] = withheld


# -------------------------------------------------------------------- token verification


class KeySource(Protocol):
    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK: ...


class JwksFile:
    """A JWKS in a local file (``file://``; PyJWKClient fetches only http and https): the
    local stack's development issuer. Read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read: tuple[int, jwt.PyJWKSet] | None = None

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        try:
            changed = self.path.stat().st_mtime_ns
            if self._read is None or self._read[0] != changed:
                self._read = (changed, jwt.PyJWKSet.from_dict(json.loads(self.path.read_text())))
        except (OSError, ValueError, jwt.PyJWKSetError) as exc:
            raise jwt.PyJWKClientConnectionError(f"JWKS file unreadable: {exc}") from None
        for key in self._read[1].keys:
            if key.key_id == kid:
                return key
        raise jwt.PyJWKClientError("no key of the JWKS has the token's key id")


def key_source(jwks_url: str) -> KeySource:
    """PyJWT's client for an https (or http) JWKS endpoint: the set is kept 5 minutes and
    fetched again early for a key id it does not know (key rotation), but not more than
    once every 30 s, so tokens with made-up key ids cannot make us hammer the issuer."""
    url = urllib.parse.urlparse(jwks_url)
    if url.scheme == "file":
        return JwksFile(Path(urllib.request.url2pathname(url.path)))
    return jwt.PyJWKClient(jwks_url, lifespan=300, timeout=5)


class Authenticator:
    """Verifies bearer tokens against the issuer's JWKS (``https://...``, or ``file://...``
    for local development). Fetching keys is blocking I/O: it runs in a thread."""

    def __init__(self, issuer: str, audience: str, jwks_url: str) -> None:
        if jwks_url and not (issuer and audience):  # PyJWT skips a check it is given no value for
            raise ValueError("a JWKS URL needs an issuer and an audience to check tokens against")
        self.issuer, self.audience = issuer, audience
        self.jwks = key_source(jwks_url) if jwks_url else None

    async def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NoToken("a bearer token is required")
        return principal_from_claims(await self.verify(token.strip()))

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once its signature, issuer, audience and expiry are checked."""
        if self.jwks is None:
            raise AuthUnavailable("no token issuer is configured (AUTH_JWKS_URL)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("the token is malformed") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:  # a list: no 500
            raise Unauthenticated("the token's algorithm is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("the token's key id is malformed")
        try:
            key = await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError:
            raise AuthUnavailable("the issuer's keys cannot be fetched") from None
        except (jwt.PyJWKClientError, jwt.InvalidTokenError):
            raise Unauthenticated("the token is not signed by a key of the issuer") from None
        if key.algorithm_name != algorithm:
            raise Unauthenticated("the token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as exc:  # signature, iss, aud, a missing claim
            raise Unauthenticated(f"the token is not valid: {type(exc).__name__}") from None
        if str(claims.get("typ", "")).lower() in ID_TOKEN_TYPES:
            # an OIDC ID token says who logged in to a client, not what it may call: Keycloak
            # marks it typ "ID" (an access token "Bearer"); one with our audience is refused
            raise Unauthenticated("an ID token is not an access token")
        return claims
