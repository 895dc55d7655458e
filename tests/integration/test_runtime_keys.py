"""API keys managed at run time: created, rotated and revoked through the router's API (and
the CLI), stored as digests only, taken up by every service within seconds without a
restart, their last use recorded; configured keys keep working."""

import asyncio

from sqlalchemy import text

from services.ingest.app import create_app as ingest_app
from services.ingest.settings import IngestSettings
from services.metrics.app import create_app as metrics_app
from services.metrics.settings import MetricsSettings
from services.router.app import create_app as router_app
from services.router.settings import RouterSettings
from shared.auth import hash_key
from shared.db import make_engine
from tests.conftest import Identities, eventually, running, serving
from tests.integration.test_cli import switchboard

FAST = {"keys_refresh_s": 0.2, "keys_last_used_s": 0.2}
MESSAGE = {
    "channel": "chat",
    "channel_message_id": "k1",
    "conversation_ref": "keys",
    "customer": {"id": "c1"},
    "text": "hello",
}


async def answers(client, method, path, key, code, **kwargs):
    """Wait until ``key`` gets ``code`` (the services take a change up within seconds)."""

    async def probe():
        answer = await client.request(method, path, headers=Identities.bearer(key), **kwargs)
        return answer.status_code == code

    await eventually(probe, timeout=10, what=f"{method} {path} answering {code}")


async def test_a_key_created_at_run_time_works_on_every_service_until_rotated_or_revoked(
    common, ids, database_url
):
    settings = {**common, **FAST}
    async with (
        running(router_app(RouterSettings(**settings))) as router,
        running(ingest_app(IngestSettings(**settings))) as ingest,
        running(metrics_app(MetricsSettings(**settings))) as metrics,
    ):
        created = await router.post(
            "/v1/keys", headers=ids.as_ops, json={"name": "night-bot", "scopes": ["ingest"]}
        )
        assert created.status_code == 201, created.text
        bot = created.json()
        assert bot["status"] == "active" and bot["scopes"] == ["ingest"]
        dash = (
            await router.post(
                "/v1/keys", headers=ids.as_ops, json={"name": "dashboard", "scopes": ["ops"]}
            )
        ).json()

        await answers(ingest, "POST", "/v1/messages", bot["key"], 202, json=MESSAGE)
        await answers(metrics, "GET", "/v1/live/queues", dash["key"], 200)
        await answers(router, "GET", "/v1/agents", dash["key"], 200)
        # The scopes hold as for a configured key.
        await answers(metrics, "GET", "/v1/live/queues", bot["key"], 403)

        # Only digests are stored; nothing answers a key or a digest after its creation.
        engine = make_engine(database_url, pool_size=1)
        async with engine.connect() as conn:
            stored = (
                await conn.execute(text("SELECT name, sha256 FROM auth.api_keys ORDER BY name"))
            ).all()
            assert stored == [
                ("dashboard", hash_key(dash["key"])),
                ("night-bot", hash_key(bot["key"])),
            ]
            dump = (await conn.execute(text("SELECT t::text FROM auth.api_keys t"))).scalars()
            assert not any(bot["key"] in row or dash["key"] in row for row in dump)
        listed = await router.get("/v1/keys", headers=ids.as_ops)
        assert [k["name"] for k in listed.json()] == ["dashboard", "night-bot"]
        assert all("key" not in k and "sha256" not in k for k in listed.json())

        async def used():
            found = (await router.get("/v1/keys", headers=ids.as_ops)).json()
            return all(k["last_used_at"] for k in found)

        await eventually(used, what="the last use of both keys recorded")

        rotated = await router.post(f"/v1/keys/{bot['id']}/rotate", headers=ids.as_ops)
        assert rotated.status_code == 200 and rotated.json()["id"] == bot["id"]
        new = rotated.json()["key"]
        await answers(ingest, "POST", "/v1/messages", bot["key"], 401, json=MESSAGE)
        await answers(ingest, "POST", "/v1/messages", new, 202, json=MESSAGE)

        revoked = await router.delete(f"/v1/keys/{dash['id']}", headers=ids.as_ops)
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        await answers(metrics, "GET", "/v1/live/queues", dash["key"], 401)
        await answers(router, "GET", "/v1/agents", dash["key"], 401)
        again = await router.delete(f"/v1/keys/{dash['id']}", headers=ids.as_ops)
        assert again.status_code == 404
        live = (await router.get("/v1/keys", headers=ids.as_ops)).json()
        assert [k["name"] for k in live] == ["night-bot"]
        every = (await router.get("/v1/keys?revoked=true", headers=ids.as_ops)).json()
        assert {k["name"]: k["status"] for k in every} == {
            "dashboard": "revoked",
            "night-bot": "active",
        }
        # Configured keys keep working beside the stored ones.
        await answers(ingest, "POST", "/v1/messages", ids.ingest, 202, json=MESSAGE)
        await engine.dispose()


async def test_keys_expire_and_a_rotation_can_leave_the_old_secret_a_grace_period(common, ids):
    async with running(router_app(RouterSettings(**common, **FAST))) as router:
        brief = (
            await router.post(
                "/v1/keys",
                headers=ids.as_ops,
                json={"name": "brief", "scopes": ["ops"], "expires_in_s": 2},
            )
        ).json()
        assert brief["expires_at"] is not None
        await answers(router, "GET", "/v1/agents", brief["key"], 200)
        await answers(router, "GET", "/v1/agents", brief["key"], 401)
        (found,) = (await router.get("/v1/keys", headers=ids.as_ops)).json()
        assert found["status"] == "expired"
        gone = await router.post(f"/v1/keys/{brief['id']}/rotate", headers=ids.as_ops)
        assert gone.status_code == 404  # an expired key is not brought back by a rotation

        old = (
            await router.post("/v1/keys", headers=ids.as_ops, json={"name": "k", "scopes": ["ops"]})
        ).json()
        await answers(router, "GET", "/v1/agents", old["key"], 200)
        rotated = await router.post(
            f"/v1/keys/{old['id']}/rotate", headers=ids.as_ops, json={"grace_s": 2}
        )
        assert rotated.json()["previous_valid_until"] is not None
        await answers(router, "GET", "/v1/agents", rotated.json()["key"], 200)
        both = await router.get("/v1/agents", headers=ids.bearer(old["key"]))
        assert both.status_code == 200  # within the grace period
        await answers(router, "GET", "/v1/agents", old["key"], 401)
        await answers(router, "GET", "/v1/agents", rotated.json()["key"], 200)


async def test_keys_are_checked_and_listed_in_pages(common, ids):
    async with running(router_app(RouterSettings(**common, **FAST))) as router:

        async def create(**body):
            return await router.post("/v1/keys", headers=ids.as_ops, json=body)

        assert (await create(name="x", scopes=["root"])).status_code == 422
        assert (await create(name="x", scopes=[])).status_code == 422
        assert (await create(name="bad name", scopes=["ops"])).status_code == 422
        past = await create(name="x", scopes=["ops"], expires_at="2001-01-01T00:00:00Z")
        assert past.status_code == 400
        for name in ("a", "b", "c"):
            assert (await create(name=name, scopes=["ingest"])).status_code == 201
        taken = await create(name="b", scopes=["ops"])
        assert taken.status_code == 409 and "rotate or revoke" in taken.json()["detail"]
        agent = ids.agent_ids[0]
        refused = await router.post(
            "/v1/keys", headers=ids.as_agent(agent), json={"name": "d", "scopes": ["ops"]}
        )
        assert refused.status_code == 403

        names, url = [], "/v1/keys?limit=2"
        while url:
            page = await router.get(url, headers=ids.as_ops)
            names += [k["name"] for k in page.json()]
            url = page.links.get("next", {}).get("url")
        assert names == ["a", "b", "c"]


async def test_creating_an_agent_can_return_its_first_key(common, ids):
    async with running(router_app(RouterSettings(**common, **FAST))) as router:
        profile = {
            "name": "New",
            "skills": {"general": 2},
            "languages": ["en"],
            "capacity": {"chat": 2},
        }
        created = await router.put(
            "/v1/agents/newcomer?issue_key=true", headers=ids.as_ops, json=profile
        )
        assert created.status_code == 200, created.text
        key = created.json()["key"]
        assert key["name"] == "agent:newcomer" and key["scopes"] == ["agent:newcomer"]
        status = {"json": {"status": "online"}}
        await answers(router, "PUT", "/v1/agents/newcomer/status", key["key"], 200, **status)
        await answers(router, "GET", "/v1/agents", key["key"], 403)

        # A second first key is refused, and the agent is left as it was.
        again = await router.put(
            "/v1/agents/newcomer?issue_key=true", headers=ids.as_ops, json={**profile, "name": "X"}
        )
        assert again.status_code == 409
        plain = await router.put("/v1/agents/newcomer", headers=ids.as_ops, json=profile)
        assert plain.status_code == 200 and plain.json()["key"] is None


async def test_a_service_whose_key_table_cannot_be_read_still_takes_configured_keys(
    common, ids, pg
):
    unreachable = pg.url_for("no_such_database")
    settings = IngestSettings(**{**common, "database_url": unreachable, **FAST})
    async with running(ingest_app(settings)) as ingest:
        answer = await ingest.post("/v1/messages", headers=ids.as_ingest, json=MESSAGE)
        assert answer.status_code == 202
        await asyncio.sleep(0.5)  # the table's refresh fails a few times meanwhile
        answer = await ingest.post("/v1/messages", headers=ids.as_ingest, json=MESSAGE)
        assert answer.status_code == 202


async def test_operators_manage_keys_with_the_cli(common, ids):
    async with serving(router_app(RouterSettings(**common, **FAST))) as url:
        env = {"SWITCHBOARD_ROUTER_URL": url, "SWITCHBOARD_OPS_KEY": ids.ops}
        code, stdout, stderr = await switchboard(
            "keys", "create", "bot", "--scope", "ingest", "--expires-in", "30d", env=env
        )
        assert code == 0, stderr
        first, second = stdout.splitlines()[:2]
        assert first.startswith("key (shown once): sb_")
        assert "bot (ingest), expires" in second
        code, stdout, _ = await switchboard("keys", "list", env=env)
        assert code == 0 and "bot" in stdout and "active" in stdout
        code, stdout, stderr = await switchboard("keys", "rotate", "bot", "--grace", "5m", env=env)
        assert code == 0 and stdout.startswith("key (shown once): sb_"), stderr
        code, stdout, _ = await switchboard("keys", "revoke", "bot", env=env)
        assert code == 0 and "revoked bot" in stdout
        code, _, stderr = await switchboard("keys", "revoke", "bot", env=env)
        assert code == 1 and "no live key named 'bot'" in stderr
