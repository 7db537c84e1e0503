"""Versioned PII keys (issue 14, "Keys"): key rings for the NIK/KK encryption and the NIK's
keyed hash, ``jakpreneur keys rotate``, and a hash-key roll that loses no duplicate.

The unit tests parse rings; the others run on the session's real mongod (as its admin, the
way ops run the CLI) and, for the whole flow, a registry on the real Kafka."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError

from deploy.local.launcher import free_port
from services.registry.app import (
    DEV_ENCRYPTION_KEY,
    DEV_HASH_KEY,
    PiiKeys,
    RegistrySettings,
    create_app,
)
from services.registry.store import (
    SINGLE_KEY_ID,
    KeyRingError,
    PiiVault,
    RegistryStore,
    parse_key_ring,
)
from shared.contracts import ParticipantRegistered, RegistrationRejected, RegistrationSubmitted
from shared.settings import DevelopmentSecretsError
from tests.conftest import Servers, random_id
from tests.kafka_helpers import Collector, send, serving
from tests.shared import test_settings
from tools.registrations import Generator, headers_for

CLI = Path(sys.executable).with_name("jakpreneur")  # the installed entry point
SECURE = {**test_settings.SECURE, "auth_issuer": test_settings.PROVINCE_ISSUER}  # a deployment


def fernet_key() -> str:
    return Fernet.generate_key().decode()


def hash_key() -> str:
    return secrets.token_urlsafe(32)


def ring(*pairs: tuple[str, str]) -> str:
    return ",".join(f"{key_id}:{key}" for key_id, key in pairs)


# ------------------------------------------------------------------------------ unit


def test_a_ring_is_id_key_pairs_current_first() -> None:
    assert parse_key_ring(" 2:abc , 2024-01.b_x:d:e= ", "X") == [
        ("2", "abc"),
        ("2024-01.b_x", "d:e="),  # a key is everything after its id's first colon
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("s3cret-key-material", "item 1 is not id:key"),
        ("1:s3cret-key-material,", "item 2 is not id:key"),
        ("1:s3cret-key-material,2:", "item 2 is not id:key"),
        ("a b:s3cret-key-material", "item 1's id"),
        (":s3cret-key-material", "item 1's id"),
        ("1:s3cret-key-material,1:s3cret-key-material2", "key id '1' appears twice"),
    ],
)
def test_a_bad_ring_is_refused_naming_the_variable_never_a_key(text: str, says: str) -> None:
    with pytest.raises(KeyRingError) as refused:
        parse_key_ring(text, "REGISTRY_PII_HASH_KEYS")
    assert str(refused.value).startswith("REGISTRY_PII_HASH_KEYS: ")
    assert says in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_the_single_key_variables_are_a_one_key_ring() -> None:
    settings = RegistrySettings(jakpreneur_env="development")
    assert settings.hash_ring() == [(SINGLE_KEY_ID, DEV_HASH_KEY)]
    assert settings.encryption_ring() == [(SINGLE_KEY_ID, DEV_ENCRYPTION_KEY)]
    # the hash of a NIK is the one stored before key rings: old documents are still found
    nik = "3171234567890123"
    legacy = hmac.new(DEV_HASH_KEY.encode(), nik.encode(), hashlib.sha256).hexdigest()
    assert settings.pii_vault().lookup_hashes(nik) == [legacy]


def test_a_ring_replaces_the_single_key_and_its_current_key_is_checked() -> None:
    new, old, hashed = fernet_key(), fernet_key(), hash_key()
    keys = {
        "pii_encryption_keys": ring(("2", new), ("1", old)),
        "pii_hash_keys": ring(("h2", hashed), ("h1", DEV_HASH_KEY)),
    }
    # outside development, no single key set: the ring's current keys are what is checked
    settings = RegistrySettings(**SECURE, **keys, jakpreneur_env="production")
    assert settings.encryption_ring() == [("2", new), ("1", old)]
    assert [key_id for key_id, _ in settings.hash_ring()] == ["h2", "h1"]
    assert settings.pii_encryption_key.get_secret_value() == new
    assert settings.pii_hash_key.get_secret_value() == hashed
    vault = settings.pii_vault()
    assert (vault.encryption_key_id, vault.hash_key_ids) == ("2", ["h2", "h1"])
    assert vault.decrypt(Fernet(old.encode()).encrypt(b"retired")) == "retired"
    text = repr(settings) + str(settings) + repr(vault)
    assert not any(secret in text for secret in (new, old, hashed))
    # a development key as the current one is refused, as the single variable is
    with pytest.raises(DevelopmentSecretsError, match="pii_hash_key"):
        RegistrySettings(
            **SECURE,
            pii_encryption_keys=ring(("2", new)),
            pii_hash_keys=ring(("h0", DEV_HASH_KEY), ("h2", hashed)),
            jakpreneur_env="production",
        )


def test_a_ring_with_a_key_that_is_no_fernet_key_stops_the_start_without_showing_it() -> None:
    with pytest.raises(KeyRingError) as refused:
        RegistrySettings(
            jakpreneur_env="development",
            pii_encryption_keys=ring(("2", "not-a-fernet-key-s3cret"), ("1", fernet_key())),
        )
    assert "'2'" in str(refused.value) and "s3cret" not in str(refused.value)
    with pytest.raises(KeyRingError, match="REGISTRY_PII_ENCRYPTION_KEYS: item 1"):
        PiiKeys(pii_encryption_keys="no-id-s3cret")


# ----------------------------------------------------------------- on the real mongod


def person(generator: Generator) -> dict[str, Any]:
    data = generator.valid()
    return {
        "_id": random_id("p-"),
        "submission_id": data["submission_id"],
        "nik": data["nik"],
        "kk": data["kk"],
        "city": data["city"],
    }


async def register(store: RegistryStore, people: list[dict[str, Any]]) -> None:
    async with store.client.start_session() as session:
        await store.insert_participants(session, [dict(p) for p in people])


async def found(store: RegistryStore, niks: set[str]) -> set[str]:
    """The participants a registration's duplicate check finds for ``niks``."""
    async with store.client.start_session() as session:
        by_hash = await store.participants_by_nik(session, niks)
    assert set(by_hash) == {store.vault.lookup_hash(nik) for nik in niks} & set(by_hash)
    return set(by_hash.values())


@asynccontextmanager
async def database(servers: Servers) -> AsyncIterator[tuple[AsyncMongoClient[Any], str]]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(servers.mongodb_uri, tz_aware=True)
    name = random_id("keys_")
    try:
        yield client, name
    finally:
        await client.drop_database(name)
        await client.close()


def readable(doc: dict[str, Any], vault: PiiVault, who: dict[str, Any]) -> bool:
    return bool(
        vault.decrypt(doc["nik_encrypted"]) == who["nik"]
        and vault.decrypt(doc["kk_encrypted"]) == who["kk"]
    )


async def test_rotation_to_key_2_keeps_everything_readable_and_duplicates_found(
    servers: Servers,
) -> None:
    """Key 1 -> ring (2, 1) -> rotate -> key 1 retired -> rotate: every value reads under key 2
    alone, nothing opens under key 1, every NIK is still found; a second run changes nothing.
    One document is from before key rings (a string hash, no key ids)."""
    generator = Generator(seed=None)
    e1, e2, h1, h2 = fernet_key(), fernet_key(), hash_key(), hash_key()
    people = [person(generator) for _ in range(23)]
    async with database(servers) as (client, name):
        first = RegistryStore(client, name, PiiVault([("1", h1)], [("1", e1)]))
        await first.ensure_indexes()
        await register(first, people[1:])
        legacy = people[0]  # as stored before key rings
        await first.participants.insert_one(
            {
                "_id": legacy["_id"],
                "submission_id": legacy["submission_id"],
                "nik_hash": first.vault.lookup_hash(legacy["nik"]),
                "nik_encrypted": first.vault.encrypt(legacy["nik"]),
                "kk_encrypted": first.vault.encrypt(legacy["kk"]),
            }
        )
        ids = {p["_id"] for p in people}
        niks = {p["nik"] for p in people}

        rolling = RegistryStore(
            client, name, PiiVault([("2", h2), ("1", h1)], [("2", e2), ("1", e1)])
        )
        assert await found(rolling, niks) == ids  # before any rotation
        seen: list[tuple[int, int]] = []
        rotation = await rolling.rotate_keys(batch_size=5, progress=lambda *p: seen.append(p))
        assert rotation.summary() == {
            "encryption_key": "2",
            "hash_keys": ["2", "1"],
            "stale_before": 23,
            "rotated": 23,
            "unreadable": [],
            "conflicts": [],
            "changed_meanwhile": 0,
            "complete": True,
        }
        assert seen[-1] == (23, 23) and len(seen) == 5

        retired = RegistryStore(client, name, PiiVault([("2", h2)], [("2", e2)]))
        assert (await retired.rotate_keys()).rotated == 23  # drops the hashes under key 1
        docs = {d["_id"]: d for d in await retired.participants.find().to_list()}
        for p in people:
            doc = docs[p["_id"]]
            assert readable(doc, retired.vault, p)
            assert doc["pii_key"] == "2" and doc["nik_hash_keys"] == ["2"]
            assert doc["nik_hash"] == [retired.vault.lookup_hash(p["nik"])]
            for token in (doc["nik_encrypted"], doc["kk_encrypted"]):
                with pytest.raises(InvalidToken):
                    Fernet(e1.encode()).decrypt(token)
        assert await found(retired, niks) == ids  # duplicates found with key 1 retired
        dump = json.dumps(list(docs.values()), default=str)
        assert not any(p["nik"] in dump or p["kk"] in dump for p in people)
        assert not any(first.vault.lookup_hash(n) in dump for n in niks)

        again = await retired.rotate_keys()
        assert (again.stale_before, again.rotated, again.complete) == (0, 0, True)
        assert await retired.participants.find().sort("_id").to_list() == sorted(
            docs.values(), key=lambda d: d["_id"]
        )


async def test_a_hash_key_roll_keeps_detecting_an_already_registered_nik(
    servers: Servers,
) -> None:
    """The hash key rolled (a new current key, the old one kept) with no rotation yet: an
    already-registered NIK is still found; a new registration is stored under both keys, so
    a replica still on the old key alone finds it too, and the unique index still refuses a
    second record of one NIK whichever key its writer thinks current."""
    generator = Generator(seed=None)
    e1, h1, h2 = fernet_key(), hash_key(), hash_key()
    registered, newcomer = person(generator), person(generator)
    async with database(servers) as (client, name):
        before = RegistryStore(client, name, PiiVault([("1", h1)], [("1", e1)]))
        await before.ensure_indexes()
        await register(before, [registered])
        after = RegistryStore(client, name, PiiVault([("2", h2), ("1", h1)], [("1", e1)]))
        assert await found(after, {registered["nik"]}) == {registered["_id"]}
        assert await found(after, {newcomer["nik"]}) == set()

        await register(after, [newcomer])
        assert await found(before, {newcomer["nik"]}) == {newcomer["_id"]}  # an old replica
        for store in (before, after):
            twin = {**person(generator), "nik": newcomer["nik"]}
            with pytest.raises(BulkWriteError) as refused:
                await register(store, [twin])
            assert refused.value.details["writeErrors"][0]["keyPattern"] == {"nik_hash": 1}
        # after rotation, the retired key no longer finds anybody; the current one does
        rotated = RegistryStore(client, name, PiiVault([("2", h2)], [("1", e1)]))
        assert (await rotated.rotate_keys()).complete
        both = {registered["nik"], newcomer["nik"]}
        assert await found(rotated, both) == {registered["_id"], newcomer["_id"]}
        assert await found(before, both) == set()


async def test_an_unreadable_document_is_named_and_the_rest_rotated(servers: Servers) -> None:
    generator = Generator(seed=None)
    e1, e2, lost, h1 = fernet_key(), fernet_key(), fernet_key(), hash_key()
    good, orphan = person(generator), person(generator)
    async with database(servers) as (client, name):
        await register(RegistryStore(client, name, PiiVault([("1", h1)], [("1", e1)])), [good])
        await register(RegistryStore(client, name, PiiVault([("1", h1)], [("x", lost)])), [orphan])
        store = RegistryStore(client, name, PiiVault([("1", h1)], [("2", e2), ("1", e1)]))
        rotation = await store.rotate_keys()
        assert rotation.rotated == 1 and rotation.unreadable == [orphan["_id"]]
        assert not rotation.complete
        assert (await store.rotate_keys()).unreadable == [orphan["_id"]]  # still, no loop


# ------------------------------------------------------------------------------ the CLI


def cli_env(servers: Servers, name: str, tmp_path: Path, **keys: str) -> dict[str, str]:
    """Ops' environment: MongoDB's admin, the registry's keys, no local stack."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "MONGODB_"))},
        "MONGODB_ADMIN_URI": servers.mongodb_uri,
        "REGISTRY_MONGODB_DATABASE": name,
        "JAKPRENEUR_RUN_DIR": str(tmp_path / "no-stack"),
        "JAKPRENEUR_ENV": "development",
        **{f"REGISTRY_{k.upper()}": v for k, v in keys.items()},
    }


async def rotate_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [str(CLI), "keys", "rotate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_the_cli_killed_midway_leaves_everything_readable_and_a_rerun_finishes(
    servers: Servers, tmp_path: Path
) -> None:
    generator = Generator(seed=None)
    e1, e2, h1, h2 = fernet_key(), fernet_key(), hash_key(), hash_key()
    people = [person(generator) for _ in range(300)]
    async with database(servers) as (client, name):
        first = RegistryStore(client, name, PiiVault([("1", h1)], [("1", e1)]))
        await first.ensure_indexes()
        await register(first, people)
        keys = {
            "pii_encryption_keys": ring(("2", e2), ("1", e1)),
            "pii_hash_keys": ring(("2", h2), ("1", h1)),
        }
        env = cli_env(servers, name, tmp_path, **keys)
        process = await asyncio.create_subprocess_exec(
            str(CLI),
            "keys",
            "rotate",
            "--batch",
            "1",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert process.stderr is not None
        line = await process.stderr.readline()  # the first document done
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert b"examined" in line, line

        ring_vault = PiiVault([("2", h2), ("1", h1)], [("2", e2), ("1", e1)])
        docs = {d["_id"]: d for d in await first.participants.find().to_list()}
        rotated = sum(d["pii_key"] == "2" for d in docs.values())
        assert 0 < rotated < len(people)  # killed midway
        assert all(readable(docs[p["_id"]], ring_vault, p) for p in people)

        done = await rotate_cli(env, "--output", "json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["database"] == name and summary["complete"] is True
        assert summary["rotated"] == summary["stale_before"] == len(people) - rotated
        assert f"{summary['stale_before']}/{summary['stale_before']} examined" in done.stderr
        again = json.loads((await rotate_cli(env, "-o", "json")).stdout)
        assert (again["stale_before"], again["rotated"]) == (0, 0)
        for secret in (e1, e2, h1, h2):
            assert secret not in done.stdout + done.stderr

        # development keys outside development: refused, before touching anything
        dev = {**cli_env(servers, name, tmp_path), "JAKPRENEUR_ENV": "production"}
        refused = await rotate_cli(dev)
        assert refused.returncode == 2 and "development keys in pii_hash_key" in refused.stderr
        broken = cli_env(servers, name, tmp_path, pii_encryption_keys="2:s3cret-not-fernet")
        refused = await rotate_cli(broken)
        assert refused.returncode == 2 and "s3cret" not in refused.stdout + refused.stderr


# ---------------------------------------------------- the whole flow, with the service


@asynccontextmanager
async def registry_on(
    servers: Servers, prefix: str, name: str, **keys: str
) -> AsyncIterator[RegistrySettings]:
    settings = RegistrySettings(
        **servers.settings_for("registry", prefix, name),
        http_port=free_port(),
        outbox_relay_interval_s=0.2,
        **keys,
    )
    async with serving(create_app(settings), settings.http_port):
        yield settings


async def test_registered_under_key_1_rotated_by_the_cli_then_a_duplicate_is_refused(
    servers: Servers, producer: Any, tmp_path: Path
) -> None:
    """A registry on key 1 registers a participant; ops roll both keys with the CLI and
    retire key 1; a registry on key 2 alone still refuses the same NIK as already
    registered."""
    prefix, name = random_id("keys-") + ".", random_id("registry_")
    e1, e2, h1, h2 = fernet_key(), fernet_key(), hash_key(), hash_key()
    generator = Generator(seed=None)
    first = generator.valid()
    twin = generator.valid(
        nik=first["nik"],
        birth_date=first["birth_date"],
        gender=first["gender"],
        city=first["city"],
    )
    outcomes: Collector | None = None

    async def submit(data: dict[str, Any]) -> str:
        await send(
            producer,
            prefix + RegistrationSubmitted.name,
            json.dumps(data).encode(),
            data["submission_id"].encode(),
            headers_for(data["submission_id"]),
        )
        assert outcomes is not None
        (seen,) = await outcomes.wait_for(
            lambda r: r.json().get("submission_id") == data["submission_id"]
        )
        return seen.topic

    try:
        one = {"pii_encryption_keys": ring(("1", e1)), "pii_hash_keys": ring(("1", h1))}
        async with registry_on(servers, prefix, name, **one):  # it creates the topics
            outcomes = await Collector(
                servers.kafka,
                [prefix + ParticipantRegistered.name, prefix + RegistrationRejected.name],
            ).start()
            assert await submit(first) == prefix + ParticipantRegistered.name
        for keys in (
            {
                "pii_encryption_keys": ring(("2", e2), ("1", e1)),
                "pii_hash_keys": ring(("2", h2), ("1", h1)),
            },
            {"pii_encryption_keys": ring(("2", e2)), "pii_hash_keys": ring(("2", h2))},
        ):
            done = await rotate_cli(cli_env(servers, name, tmp_path, **keys), "-o", "json")
            assert done.returncode == 0 and json.loads(done.stdout)["rotated"] == 1, done.stderr
        two = {"pii_encryption_keys": ring(("2", e2)), "pii_hash_keys": ring(("2", h2))}
        async with registry_on(servers, prefix, name, **two):
            assert await submit(twin) == prefix + RegistrationRejected.name
        rejected = outcomes.matching(lambda r: r.topic == prefix + RegistrationRejected.name)
        assert [r["code"] for r in rejected[0].json()["reasons"]] == ["already-registered"]
    finally:
        if outcomes is not None:
            await outcomes.stop()
        client: AsyncMongoClient[Any] = AsyncMongoClient(servers.mongodb_uri)
        await client.drop_database(name)
        await client.close()
