"""The AsyncAPI documents: generated from the catalogue, fresh in git, with an example of every
event that its contract accepts, valid for the official parser (``@asyncapi/parser``, 0
errors and 0 warnings), served by each service as its own part, and rendered offline."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jsonschema
import pytest
import yaml

from shared import asyncapi
from shared.access import SERVICES
from shared.contracts import (
    CATALOGUE,
    SCHEMA_DIR,
    Event,
    ParticipantRegistered,
    RegistrationSubmitted,
    event_of_topic,
    personal_fields,
)
from shared.envelope import Envelope
from shared.settings import ServiceSettings
from tests import auth_helpers
from tests.coaching.fixtures import CoachingUnderTest
from tests.conftest import random_id
from tests.docs.devtools import chromium_page
from tests.kafka_helpers import send
from tests.marketplace.fixtures import MarketplaceUnderTest
from tests.notifications.fixtures import NotificationsUnderTest
from tests.registry.fixtures import Registry
from tools.asyncapi import DOCUMENT, render
from tools.registrations import headers_for

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = Path(__file__).with_name("validate_asyncapi.cjs")
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9\.\-_]+$")  # the spec's pattern of component keys
EVENT_IDS = [e.name for e in CATALOGUE]


@pytest.fixture(scope="module")
def system() -> dict[str, Any]:
    """The system-wide document, built once for the tests that read it."""
    return asyncapi.system_document()


def offline_service_document(service: str, prefix: str = "staging.") -> dict[str, Any]:
    settings = ServiceSettings.model_construct(
        service_name=service, topic_prefix=prefix, kafka_security_protocol="SASL_SSL"
    )
    return asyncapi.service_document(settings)


def merge_patch(origin: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7386), as AsyncAPI applies a message's traits to it."""
    if not isinstance(patch, dict):
        return patch
    result = dict(origin) if isinstance(origin, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def message_headers_schema(document: dict[str, Any], event: type[Event]) -> dict[str, Any]:
    message = document["components"]["messages"][event.ce_type()]
    [trait_ref] = message["traits"]
    trait = document["components"]["messageTraits"][trait_ref["$ref"].rsplit("/", 1)[1]]
    return dict(merge_patch(trait["headers"], message["headers"]))


# ------------------------------------------------------------------ offline


def test_docs_asyncapi_yaml_is_what_the_catalogue_gives_now() -> None:
    assert DOCUMENT.read_text() == render(), "docs/asyncapi.yaml is stale: run `make asyncapi`"
    document = yaml.safe_load(DOCUMENT.read_text())
    assert set(document["channels"]) >= {e.name for e in CATALOGUE}
    assert document["asyncapi"].startswith("3.")


@pytest.mark.parametrize("event", CATALOGUE, ids=EVENT_IDS)
def test_every_event_has_an_example_its_contract_and_published_schema_accept(
    event: type[Event], system: dict[str, Any]
) -> None:
    payload = asyncapi.example_of(event)
    assert payload is not None, f"add an example of {event.name} to shared/examples.py"
    # as a consumer of the services reads it: strictly, from JSON
    event.model_validate_json(json.dumps(payload), strict=True)
    snapshot = json.loads((SCHEMA_DIR / f"{event.ce_type()}.json").read_text())
    jsonschema.Draft202012Validator(snapshot).validate(payload)
    [example] = system["components"]["messages"][event.ce_type()]["examples"]
    assert example["payload"] == payload


@pytest.mark.parametrize("event", CATALOGUE, ids=EVENT_IDS)
def test_every_example_envelope_is_one_the_services_accept_and_the_document_describes(
    event: type[Event], system: dict[str, Any]
) -> None:
    document = system
    [example] = document["components"]["messages"][event.ce_type()]["examples"]
    headers, payload = example["headers"], example["payload"]
    jsonschema.Draft7Validator(message_headers_schema(document, event)).validate(headers)
    envelope = Envelope.from_headers(headers)
    assert envelope.type == event.ce_type() and envelope.source in event.producers
    key = asyncapi.key_of(event)
    assert key is not None
    if key is asyncapi.PARTICIPANT_KEY and event.producers[0] in SERVICES:
        assert envelope.subject == payload["participant_id"]


def test_every_envelope_header_is_in_the_trait_and_a_header_of_another_type_is_refused(
    system: dict[str, Any],
) -> None:
    document = system
    trait = document["components"]["messageTraits"]["cloudevents"]["headers"]
    full = asyncapi._sample_envelope(minimal=False).headers()
    assert set(full) <= set(trait["properties"])  # whatever the envelope writes is documented
    assert set(trait["required"]) <= set(full)
    assert all(trait["properties"][name].get("description") for name in trait["properties"])
    schema = message_headers_schema(document, RegistrationSubmitted)
    wrong = dict(asyncapi.example_headers(RegistrationSubmitted), ce_type="jakpreneur.x.v1")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(wrong)


def test_the_dead_letter_example_is_one_a_service_writes() -> None:
    [example] = asyncapi._dead_letter_message()["examples"]
    headers = example["headers"]
    jsonschema.Draft7Validator(asyncapi.dead_letter_headers_schema()).validate(headers)
    envelope = Envelope.from_headers(headers)  # the original's envelope, as it came
    event = event_of_topic(headers["dlq_original_topic"])
    assert event is not None and envelope.type == event.ce_type()
    assert headers["dlq_failing_service"] in event.consumers
    assert headers["dlq_personal_encrypted"].split(",") == list(personal_fields(event))
    assert headers["dlq_error_type"] in (ROOT / "services" / "coaching" / "domain.py").read_text()


@pytest.mark.parametrize("event", CATALOGUE, ids=EVENT_IDS)
def test_every_topic_declares_its_key_as_a_required_field_of_its_payload(
    event: type[Event], system: dict[str, Any]
) -> None:
    key = asyncapi.key_of(event)
    assert key is not None, f"declare the key of {event.name} in shared.asyncapi.KEYS"
    assert event.model_fields[key.field].is_required()
    message = system["components"]["messages"][event.ce_type()]
    assert key.field in message["bindings"]["kafka"]["key"]["description"]


def test_every_principal_of_the_catalogue_is_described() -> None:
    principals = {p for e in CATALOGUE for p in (*e.producers, *e.consumers)}
    assert principals <= set(asyncapi.SERVICE_ROLES) | set(asyncapi.SYSTEM_ROLES)


def _keys(document: dict[str, Any]) -> list[str]:
    keys = [*document["servers"], *document["channels"], *document["operations"]]
    for section in document["components"].values():
        keys += list(section)
    for channel in document["channels"].values():
        keys += list(channel["messages"])
    return keys


@pytest.mark.parametrize("service", [None, *SERVICES])
def test_every_key_matches_the_specs_pattern_and_a_channel_has_a_message_per_event_type(
    service: str | None,
) -> None:
    document = asyncapi.system_document() if service is None else offline_service_document(service)
    assert [k for k in _keys(document) if not COMPONENT_KEY.fullmatch(k)] == []
    for name, channel in document["channels"].items():
        types = {e.ce_type() for e in CATALOGUE if e.name == name} or {"dead-letter"}
        assert set(channel["messages"]) == types, name  # one message per event type
    for message in document["components"]["messages"].values():
        payload = message["payload"]
        assert "$ref" in payload or payload.get("type") != "array"


def test_a_new_major_version_published_beside_the_old_shares_its_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class ParticipantRegisteredV3(ParticipantRegistered):
        """The same participant, as a breaking change would publish it beside v2."""

        version: ClassVar[int] = 3

    monkeypatch.setattr(asyncapi, "CATALOGUE", (*CATALOGUE, ParticipantRegisteredV3))
    document = asyncapi.system_document()
    v2, v3 = ParticipantRegistered.ce_type(), ParticipantRegisteredV3.ce_type()
    assert set(document["channels"]["participant-registered"]["messages"]) == {v2, v3}
    assert document["components"]["messages"][v2]["deprecated"] is True
    assert "deprecated" not in document["components"]["messages"][v3]
    sent = document["operations"]["registry.send.participant-registered"]["messages"]
    assert [m["$ref"].rsplit("/", 1)[1] for m in sent] == [v2, v3]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_document_is_its_own_part_of_the_catalogue(service: str) -> None:
    document = offline_service_document(service, prefix="staging.")
    info = document["info"]
    assert info["title"] == f"Jakpreneur {service} service"
    assert info["version"].startswith(f"{asyncapi.API_MAJOR}.0.0+")
    assert service in info["description"]
    involved = {e.name for e in CATALOGUE if service in (*e.producers, *e.consumers)}
    consumed = {e.name for e in CATALOGUE if service in e.consumers}
    assert set(document["channels"]) == involved | {n + ".dlq" for n in consumed}
    for name, channel in document["channels"].items():
        assert channel["address"] == f"staging.{name}"
    for operation_id, operation in document["operations"].items():
        assert operation_id.startswith(f"{service}.")
        if operation["action"] == "receive":
            group = operation["bindings"]["kafka"]["groupId"]
            assert group == {"type": "string", "enum": [f"staging.{service}"]}
    assert document["servers"]["deployment"]["protocol"] == "kafka-secure"


def test_the_vendored_renderer_is_the_one_package_lock_pins() -> None:
    ui = ROOT / "node_modules" / "@asyncapi" / "react-component"
    assert ui.exists(), "node_modules is installed by `make test` (make npm)"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/@asyncapi/react-component"]["version"]
    assert json.loads((ui / "package.json").read_text())["version"] == pinned
    for vendored, original in {
        "asyncapi-standalone.js": "browser/standalone/index.js",
        "asyncapi-default.min.css": "styles/default.min.css",
    }.items():
        digest = hashlib.sha256((asyncapi.UI_DIR / vendored).read_bytes()).hexdigest()
        assert digest == hashlib.sha256((ui / original).read_bytes()).hexdigest(), vendored


# ------------------------------------------------------------------ the official parser


async def official_parser(paths: list[Path]) -> dict[str, list[dict[str, str]]]:
    """Each file's diagnostics from ``@asyncapi/parser`` (tests/docs/validate_asyncapi.cjs)."""
    node = shutil.which("node")
    assert node, "node 20 is needed (make npm)"
    assert (ROOT / "node_modules" / "@asyncapi" / "parser").exists(), "run `make npm`"
    proc = await asyncio.create_subprocess_exec(
        node,
        str(VALIDATOR),
        *map(str, paths),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    results = [json.loads(line) for line in out.decode().splitlines()]
    assert all(r["parsed"] or r["file"].endswith("broken.json") for r in results)
    return {Path(r["file"]).name: r["diagnostics"] for r in results}


@pytest.mark.integration
async def test_the_official_parser_accepts_the_system_document_and_every_served_one(
    registry: Registry,
    coaching: CoachingUnderTest,
    marketplace: MarketplaceUnderTest,
    notifications: NotificationsUnderTest,
    tmp_path: Path,
) -> None:
    services = {
        "registry": (registry.url, registry.settings),
        "coaching": (coaching.url, coaching.settings),
        "marketplace": (marketplace.url, marketplace.settings),
        "notifications": (notifications.url, notifications.settings),
    }
    paths = [DOCUMENT]
    async with httpx.AsyncClient(headers=auth_helpers.ops()) as http:
        for name, (url, settings) in services.items():
            served = (await http.get(f"{url}/docs/asyncapi.json")).json()
            # what the service serves is its part, as deployed: its prefix, its group
            assert served == asyncapi.service_document(settings)
            assert served["info"]["title"] == f"Jakpreneur {name} service"
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(served))
            paths.append(path)
            # FastStream's try-it-out endpoint (publish anything as the service) is gone
            tried = await http.post(f"{url}/docs/asyncapi/try", json={"channelName": "x"})
            assert tried.status_code == 404
    # a negative control: the parser does report what is wrong
    broken = copy.deepcopy(asyncapi.system_document())
    del broken["components"]["messages"]["dead-letter"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    paths.append(tmp_path / "broken.json")

    diagnostics = await official_parser(paths)

    assert any(d["severity"] == "error" for d in diagnostics.pop("broken.json"))
    assert set(diagnostics) == {"asyncapi.yaml", *(f"{s}.json" for s in services)}
    for name, found in diagnostics.items():
        serious = [d for d in found if d["severity"] in ("error", "warning")]
        assert serious == [], name


@pytest.mark.integration
async def test_the_docs_page_renders_in_headless_chromium_with_nothing_from_outside(
    registry: Registry, tmp_path: Path
) -> None:
    async with chromium_page(tmp_path / "profile") as page:
        await page.send("Network.enable")
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        # the page is behind the token gate: the header a proxy or an extension would add
        await page.send(
            "Network.setExtraHTTPHeaders",
            headers={"Authorization": auth_helpers.ops()["Authorization"]},
        )
        await page.send("Page.navigate", url=f"{registry.url}/docs/asyncapi")
        # rendered: the operations of the registry's part, by the vendored renderer
        topic = registry.settings.topic("participant-registered")
        await page.wait_for(
            f"document.body.innerText.includes({json.dumps(topic)})"
            " && document.querySelectorAll('#asyncapi [id^=\"operation-\"]').length > 10"
        )
        title = await page.evaluate("document.title")
        errors = await page.evaluate("document.body.innerText.includes('Error')")
    requests = [r["request"]["url"] for r in page.of("Network.requestWillBeSent")]
    responses = {r["response"]["url"]: r["response"] for r in page.of("Network.responseReceived")}
    assert title == "Jakpreneur registry service - AsyncAPI"
    assert not errors
    assert f"{registry.url}/docs/asyncapi-ui/asyncapi-standalone.js" in requests
    outside = [u for u in requests if not (u.startswith(registry.url) or u.startswith("data:"))]
    assert outside == []
    assert page.of("Network.loadingFailed") == []
    assert page.of("Runtime.exceptionThrown") == []
    page_response = responses[f"{registry.url}/docs/asyncapi"]
    assert "default-src 'none'" in page_response["headers"]["content-security-policy"]


@pytest.mark.integration
async def test_a_dead_letter_carries_the_headers_the_document_declares(registry: Registry) -> None:
    submission_id = random_id("sub-")
    await send(
        registry.producer,
        registry.submit_topic,
        b'{"submission_id": "' + submission_id.encode() + b'", "nik": ',  # cut short
        submission_id.encode(),
        headers_for(submission_id),
    )
    [dead] = await registry.outcomes.wait_for(
        lambda r: r.topic == registry.dlq and r.key == submission_id.encode()
    )
    schema = asyncapi.dead_letter_headers_schema()
    jsonschema.Draft7Validator(schema).validate(dead.headers)
    undocumented = set(dead.headers) - set(schema["properties"]) - set(asyncapi.envelope_headers())
    assert undocumented == set()
    assert dead.headers["dlq_error_type"] == "invalid-json"
    assert dead.headers["dlq_original_topic"] == registry.submit_topic
