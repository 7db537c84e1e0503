"""Each role reads exactly its scope over HTTP, on the session's running services.

Three participants, registered through the registry: A in Jakarta Selatan, kecamatan K1,
who finishes training (so coaching assigns the Jakarta Selatan city centre's pendamping,
``kota-1``, and the registry's journey records it); B in Jakarta Selatan, kecamatan K2; C in
Jakarta Barat, in a kecamatan also called K1. A has been referred to Bank DKI (seeded in the
marketplace's state: the referral itself is tests/e2e/test_one_participant_journey.py's).

The expectations are a table written apart from shared.auth's: every role x every endpoint x
every participant, each answer 200 (in scope), 403 (the role does not read the endpoint) or
404 (the participant is outside the scope, answered as if they did not exist).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient

from shared.contracts import ParticipantRegistered, TrainingEnrolled
from tests import auth_helpers
from tests.coaching.fixtures import CoachingUnderTest
from tests.coaching.test_coaching_flow import complete_training
from tests.conftest import Servers, random_id
from tests.marketplace.fixtures import MarketplaceUnderTest
from tests.notifications.fixtures import NotificationsUnderTest
from tests.registry.fixtures import Registry
from tools.registrations import make_nik

pytestmark = pytest.mark.integration

SELATAN, BARAT = "Jakarta Selatan", "Jakarta Barat"
MENTOR = "kota-1"  # tests/coaching/fixtures.py's roster: Jakarta Selatan's city centre


@dataclass
class World:
    pids: dict[str, str]  # "A", "B", "C" -> participant id
    submission_a: str
    k1: str
    k2: str
    urls: dict[str, str]  # service -> base URL


ROLES: dict[str, tuple[str, dict[str, str]]] = {  # name -> (role, claims); filled per world
    "ops": ("ops", {}),
    "dinas": ("dinas", {}),
    "kota": ("kota", {"city": SELATAN}),
    "kecamatan": ("kecamatan", {"city": SELATAN}),  # + kecamatan K1
    "pendamping": ("pendamping", {"pendamping_id": MENTOR}),
    "bank": ("bank", {}),
    "participant": ("participant", {}),  # + participant_id A
}
# Endpoints over one participant: name -> (service, path after /participants/{id}).
ENDPOINTS = {
    "participant": ("registry", ""),
    "journey": ("registry", "/journey"),
    "coaching": ("coaching", "/coaching"),
    "marketplace": ("marketplace", "/marketplace"),
    "financing": ("marketplace", "/financing"),
    "sales": ("marketplace", "/sales"),
    "notifications": ("notifications", "/notifications"),
}
# role -> the endpoints it reads, and the participants it reaches there.
READS = {
    "ops": {e: "ABC" for e in ENDPOINTS},
    "dinas": {e: "ABC" for e in ENDPOINTS if e != "notifications"},
    "kota": {e: "AB" for e in ENDPOINTS if e != "notifications"},
    "kecamatan": {e: "A" for e in ENDPOINTS if e != "notifications"},
    "pendamping": {"participant": "A", "journey": "A", "coaching": "A"},
    "bank": {"financing": "A", "sales": "A"},  # not the curation of /marketplace
    "participant": {e: "A" for e in ENDPOINTS},
}
SEES_PERSONAL = {"ops", "participant"}


def claims_of(name: str, world: World) -> dict[str, str]:
    claims = ROLES[name][1]
    extra = {
        "kecamatan": {"kecamatan": world.k1},
        "participant": {"participant_id": world.pids["A"]},
    }
    return {**claims, **extra.get(name, {})}


def headers(name: str, world: World) -> dict[str, str]:
    return auth_helpers.bearer(ROLES[name][0], **claims_of(name, world))


def resident(registry: Registry, city: str, kecamatan: str) -> dict[str, Any]:
    """A valid submission of someone living in ``city`` (their NIK's city code too)."""
    data = registry.generator.valid(city=city, kecamatan=kecamatan)
    birth = date.fromisoformat(data["birth_date"])
    data["nik"] = make_nik(city, birth, data["gender"], registry.generator.serial)
    return data


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(
    servers: Servers,
    registry: Registry,
    coaching: CoachingUnderTest,
    marketplace: MarketplaceUnderTest,
    notifications: NotificationsUnderTest,
) -> AsyncIterator[World]:
    k1, k2 = random_id("K1-"), random_id("K2-")
    people = {"A": (SELATAN, k1), "B": (SELATAN, k2), "C": (BARAT, k1)}
    submissions = {name: resident(registry, *where) for name, where in people.items()}
    for data in submissions.values():
        await registry.submit(data)
    pids = {}
    for name, data in submissions.items():
        [answer] = await registry.outcomes_for(data["submission_id"])
        pids[name] = ParticipantRegistered.model_validate_json(answer.value).participant_id
    for pid in pids.values():
        await coaching.wait(TrainingEnrolled, pid)
    await complete_training(coaching, pids["A"])  # coaching assigns A's pendamping
    urls = {
        "registry": registry.url,
        "coaching": coaching.url,
        "marketplace": marketplace.url,
        "notifications": notifications.url,
    }
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:

        async def mentored() -> bool:
            answer = await http.get(f"{registry.url}/participants/{pids['A']}/journey")
            return answer.status_code == 200 and answer.json().get("mentor_id") == MENTOR

        async def in_marketplace() -> bool:
            for name, pid in pids.items():
                answer = await http.get(f"{marketplace.url}/participants/{pid}/marketplace")
                if answer.status_code != 200 or answer.json().get("city") != people[name][0]:
                    return False
            # A's training-completed is in too, so no later fact rewrites the seeded referral
            answer = await http.get(f"{marketplace.url}/participants/{pids['A']}/marketplace")
            return "training-completed" in answer.json()["stages"]

        await until(mentored, "the journey's pendamping")
        await until(in_marketplace, "the marketplace's regions")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(servers.mongodb_uri)
    try:
        referral = {"referral_id": random_id("ref-"), "stages": [], "status": "referred"}
        await mongo[marketplace.settings.mongodb_database].participants.update_one(
            {"_id": pids["A"]}, {"$set": {"referral": referral}}
        )
    finally:
        await mongo.close()
    yield World(pids, submissions["A"]["submission_id"], k1, k2, urls)


CASES = [(role, endpoint, who) for role in READS for endpoint in ENDPOINTS for who in "ABC"]


@pytest.mark.parametrize(("role", "endpoint", "who"), CASES)
async def test_each_role_reads_exactly_its_endpoints_and_participants(
    world: World, role: str, endpoint: str, who: str
) -> None:
    service, tail = ENDPOINTS[endpoint]
    url = f"{world.urls[service]}/participants/{world.pids[who]}{tail}"
    async with httpx.AsyncClient() as http:
        answer = await http.get(url, headers=headers(role, world))
    reached = READS[role].get(endpoint)
    expected = 403 if reached is None else 200 if who in reached else 404
    assert answer.status_code == expected, (role, endpoint, who, answer.text)
    if expected == 404:  # as for someone who does not exist: nothing of theirs shows
        assert world.pids[who] not in answer.text and "error" in answer.json()
    if expected == 200 and endpoint == "participant":
        body = answer.json()
        if role in SEES_PERSONAL:
            assert body["full_name"] and body["contact"]["phone"] and "withheld" not in body
        else:
            assert not {"full_name", "display_name", "birth_date", "contact"} & set(body)
            assert body["withheld"] == ["birth_date", "contact", "display_name", "full_name"]
            assert body["city"] and body["kecamatan"]


def funnel_count(answer: httpx.Response) -> int:
    assert answer.status_code == 200, answer.text
    count: int = answer.json()["participants"]
    return count


FUNNEL_CASES = [  # role, query (k1/k2 filled in), expected participants or status
    ("ops", {"kecamatan": "k1"}, 2),  # A, and C: another city's K1
    ("dinas", {"kecamatan": "k1"}, 2),
    ("kota", {"kecamatan": "k1"}, 1),  # their city's K1 only
    ("kota", {"kecamatan": "k2"}, 1),
    ("kota", {"city": SELATAN, "kecamatan": "k1"}, 1),
    ("kota", {"city": BARAT, "kecamatan": "k1"}, 403),
    ("kecamatan", {}, 1),
    ("kecamatan", {"kecamatan": "k1"}, 1),
    ("kecamatan", {"kecamatan": "k2"}, 403),
    ("kecamatan", {"city": BARAT}, 403),
    ("pendamping", {"kecamatan": "k1"}, 1),  # their mentee A, not C
    ("pendamping", {"kecamatan": "k2"}, 0),  # B has no pendamping
    ("bank", {}, 403),
    ("participant", {}, 403),
]


@pytest.mark.parametrize(("role", "query", "expected"), FUNNEL_CASES)
async def test_the_funnel_counts_only_the_scope(
    world: World, role: str, query: dict[str, str], expected: int
) -> None:
    params = {k: {"k1": world.k1, "k2": world.k2}.get(v, v) for k, v in query.items()}
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{world.urls['registry']}/funnel", params=params, headers=headers(role, world)
        )
    if expected == 403:
        assert answer.status_code == 403, answer.text
        assert "error" in answer.json() and "participants" not in answer.json()
    else:
        assert funnel_count(answer) == expected
        scope = answer.json()["scope"]
        assert (
            scope
            == {
                "ops": {},
                "dinas": {},
                "kota": {"city": SELATAN},
                "kecamatan": {"city": SELATAN, "kecamatan": world.k1},
                "pendamping": {"pendamping_id": MENTOR},
            }[role]
        )


@pytest.mark.parametrize("role", sorted(READS))
async def test_only_ops_reads_a_submissions_outcome(world: World, role: str) -> None:
    url = f"{world.urls['registry']}/submissions/{world.submission_a}"
    async with httpx.AsyncClient() as http:
        answer = await http.get(url, headers=headers(role, world))
    if role == "ops":
        assert answer.json()["participant_id"] == world.pids["A"]
    else:
        assert answer.status_code == 403


@pytest.mark.parametrize("role", sorted(READS))
@pytest.mark.parametrize("service", ["registry", "coaching", "marketplace", "notifications"])
async def test_the_asyncapi_docs_take_a_token_of_any_role(
    world: World, role: str, service: str
) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{world.urls[service]}/docs/asyncapi.json", headers=headers(role, world)
        )
    assert answer.status_code == 200 and "asyncapi" in answer.json()


def _token(world: World, **overrides: Any) -> str:
    return auth_helpers.token("ops", **overrides)


BAD_TOKENS: dict[str, Callable[[World], dict[str, str]]] = {
    "none": lambda w: {},
    "empty bearer": lambda w: {"Authorization": "Bearer"},
    "basic": lambda w: {"Authorization": "Basic b3BzOm9wcw=="},
    "wrong issuer": lambda w: {"Authorization": f"Bearer {_token(w, iss='https://x.example')}"},
    "wrong audience": lambda w: {"Authorization": f"Bearer {_token(w, aud='other')}"},
    "expired": lambda w: {
        "Authorization": f"Bearer {_token(w, exp=int(datetime.now(UTC).timestamp()) - 300)}"
    },
    "wrong signature": lambda w: {"Authorization": f"Bearer {_token(w)[:-6]}AAAAAA"},
    "garbage": lambda w: {"Authorization": "Bearer not-a-token"},
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
@pytest.mark.parametrize(
    "path",
    [
        "registry:/participants/{A}",
        "registry:/participants/{A}/journey",
        "registry:/funnel",
        "registry:/submissions/{sub}",
        "registry:/docs/asyncapi",
        "registry:/no-such-path",
        "coaching:/participants/{A}/coaching",
        "marketplace:/participants/{A}/marketplace",
        "marketplace:/participants/{A}/sales",
        "marketplace:/participants/{A}/financing",
        "notifications:/participants/{A}/notifications",
    ],
)
async def test_no_valid_token_is_401_with_a_bearer_challenge(
    world: World, case: str, path: str
) -> None:
    service, template = path.split(":", 1)
    url = world.urls[service] + template.format(A=world.pids["A"], sub=world.submission_a)
    async with httpx.AsyncClient() as http:
        answer = await http.get(url, headers=BAD_TOKENS[case](world))
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    no_token = case in ("none", "empty bearer", "basic")  # RFC 6750: then no error code
    assert ('error="invalid_token"' in challenge) != no_token, challenge
    assert world.pids["A"] not in answer.text


@pytest.mark.parametrize("service", ["registry", "coaching", "marketplace", "notifications"])
async def test_probes_and_metrics_are_open_and_the_dashboard_files(
    world: World, service: str
) -> None:
    base = world.urls[service]
    async with httpx.AsyncClient() as http:
        for path in ("/healthz", "/metrics"):
            assert (await http.get(base + path)).status_code == 200, path
        assert (await http.get(base + "/readyz")).status_code in (200, 503)  # never 401
        if service == "registry":
            for path in ("/dashboard", "/dashboard/dashboard.js"):
                assert (await http.get(base + path)).status_code == 200, path
            assert (await http.get(base + "/funnel")).status_code == 401
