"""The ``switchboard`` CLI as an operator runs it (a separate process) against a real router
on loopback, the real broker and database."""

import asyncio
import hashlib
import json
import os
import sys
from datetime import UTC, datetime

from services.router.app import create_app
from services.router.settings import RouterSettings
from shared.events import DeadLetter
from tests.conftest import eventually, produce, serving
from tests.integration.routerkit import inbound, send

AGENTS_CSV = """id,name,skills,languages,capacity,team,max_load
cli-ann,Ann,security:3;general:2,en;zh,chat:2;email:5,L2,
cli-bo,Bo,funds:2,en,chat:1,,3
cli-bad,Bad,security:9,en,chat:1,,
"""
AGENTS_YAML = """agents:
  - id: cli-cy
    name: Cy
    skills: {general: 2}
    languages: [ko]
    capacity: {chat: 2}
"""


async def switchboard(*args, env):
    """Run the CLI; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_operators_manage_agents_queues_conversations_rules_and_keys(
    common, ids, broker, topics, tmp_path
):
    app = create_app(RouterSettings(**common, queue_sweep_interval_s=0.2))
    async with serving(app) as router:
        env = {
            "SWITCHBOARD_ROUTER_URL": router,
            "SWITCHBOARD_OPS_KEY": ids.ops,
            "SWITCHBOARD_KAFKA_BOOTSTRAP": broker.bootstrap,
            "SWITCHBOARD_TOPICS__NAMESPACE": topics.namespace,
        }
        (tmp_path / "agents.csv").write_text(AGENTS_CSV)
        (tmp_path / "agents.yaml").write_text(AGENTS_YAML)
        code, stdout, stderr = await switchboard(
            "agents", "import", str(tmp_path / "agents.csv"), env=env
        )
        assert code == 1 and "2 of 3 agents saved" in stdout
        # a skill level of 9 is refused, naming the row's line and column
        assert "agents.csv line 4, agent cli-bad, column skills: security:" in stderr
        code, stdout, _ = await switchboard(
            "agents", "import", str(tmp_path / "agents.yaml"), env=env
        )
        assert code == 0 and "1 of 1 agents saved" in stdout

        code, stdout, _ = await switchboard("agents", "status", "cli-ann", "online", env=env)
        assert code == 0
        code, stdout, _ = await switchboard("agents", "list", env=env)
        assert code == 0
        ann = next(line for line in stdout.splitlines() if "cli-ann" in line)
        assert "online" in ann and "L2" in ann and "chat 0/2" in ann and " 0/- " in ann
        bo = next(line for line in stdout.splitlines() if "cli-bo" in line)
        assert " 0/3 " in bo  # max_load 3
        assert "total / max_load" in stdout

        await send(broker, topics, inbound("cli-1", "my account was hacked, help", language="en"))

        async def assigned():
            answer = await switchboard("agents", "list", env=env)
            return "chat 1/2" in answer[1]

        await eventually(assigned, timeout=30, what="the conversation assigned to cli-ann")
        code, stdout, _ = await switchboard("queues", env=env)
        assert code == 0 and "no conversation is waiting" in stdout

        import httpx

        async with httpx.AsyncClient(base_url=router, headers=ids.as_ops) as http:
            (held,) = (await http.get("/v1/agents/cli-ann/assignments", params={"wait": 0})).json()[
                "conversations"
            ]
        code, stdout, _ = await switchboard("conversation", held["id"], env=env)
        assert code == 0
        assert "rules fired:" in stdout and "priority urgent" in stdout
        assert "agent: cli-ann" in stdout and "my account was hacked" in stdout
        code, _, stderr = await switchboard("conversation", "not-a-uuid", env=env)
        assert code == 1 and "422" in stderr
        code, stdout, _ = await switchboard(
            "conversation", "--conversation-key", "chat:cli-1", "--json", env=env
        )
        assert code == 0 and json.loads(stdout)["id"] == held["id"]
        code, stdout, _ = await switchboard(
            "conversation", "--message-id", held["messages"][0]["id"], env=env
        )
        assert code == 0 and held["id"] in stdout and "agent: cli-ann" in stdout
        code, _, stderr = await switchboard(
            "conversation", "--conversation-key", "chat:no", env=env
        )
        assert code == 1 and "404" in stderr
        code, _, stderr = await switchboard("conversation", env=env)
        assert code == 1 and "exactly one" in stderr

        code, _, stderr = await switchboard("queues", env={**env, "SWITCHBOARD_OPS_KEY": "x"})
        assert code == 1 and "401" in stderr

    bad_rules = tmp_path / "rules.yaml"
    bad_rules.write_text("rules:\n  - id: r1\n    priority: apocalyptic\n")
    code, stdout, _ = await switchboard("rules", "validate", "services/router/rules.yaml", env={})
    assert code == 0 and "valid" in stdout
    code, _, stderr = await switchboard("rules", "validate", str(bad_rules), env={})
    assert code == 1 and "rules.yaml" in stderr
    assert "rule 'r1': priority:" in stderr and "(found 'apocalyptic')" in stderr
    assert "rules.0" not in stderr and "pydantic" not in stderr

    code, stdout, _ = await switchboard(
        "keys", "create", "night-bot", "--scope", "ingest", "--env", env={}
    )
    key = stdout.splitlines()[0].removeprefix("key (shown once): ")
    entry = json.loads(stdout.splitlines()[1])
    assert entry == {
        "name": "night-bot",
        "sha256": hashlib.sha256(key.encode()).hexdigest(),
        "scopes": ["ingest"],
    }
    code, _, stderr = await switchboard("keys", "create", "x", "--scope", "root", env={})
    assert code == 1 and "unknown scope" in stderr


MIXED_CSV = """id,name,skills,languages,capacity,team,max_load
imp-ann,Ann,security:3,en,chat:2,,
imp-bo,Bo,funds:two,en,chat:1,,
imp-cy,Cy,general:2,en;zh,chat:1,L1,5
imp-dee,Dee,general:2,english,chat:1,,
imp-eve,Eve,general:1,en,chat:1,,lots
"""


async def test_an_import_saves_the_valid_rows_and_names_each_refused_one(common, ids, tmp_path):
    """One bad cell refuses its row, not the file; --atomic refuses the file instead."""
    import httpx

    app = create_app(RouterSettings(**common))
    async with serving(app) as router:
        env = {"SWITCHBOARD_ROUTER_URL": router, "SWITCHBOARD_OPS_KEY": ids.ops}
        atomic_csv = tmp_path / "atomic.csv"
        atomic_csv.write_text(MIXED_CSV.replace("imp-", "atom-"))
        code, stdout, stderr = await switchboard(
            "agents", "import", "--atomic", str(atomic_csv), env=env
        )
        assert code == 1 and "0 of 5 agents saved" in stdout
        assert "nothing saved, 3 of 5 rows refused" in stderr
        async with httpx.AsyncClient(base_url=router, headers=ids.as_ops) as http:
            assert not [a for a in (await http.get("/v1/agents")).json() if "atom-" in a["id"]]

        mixed = tmp_path / "agents.csv"
        mixed.write_text(MIXED_CSV)
        code, stdout, stderr = await switchboard("agents", "import", str(mixed), env=env)
        assert code == 1 and "2 of 5 agents saved" in stdout
        refused = [line for line in stderr.splitlines() if line.startswith("refused")]
        assert refused == [
            "refused agents.csv line 3, agent imp-bo, column skills: 'funds:two' is not "
            "name:number",
            "refused agents.csv line 5, agent imp-dee, column languages: 0: String should "
            "match pattern '^[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})*$' (found 'english')",
            "refused agents.csv line 6, agent imp-eve, column max_load: 'lots' is not a number",
        ]
        async with httpx.AsyncClient(base_url=router, headers=ids.as_ops) as http:
            saved = {a["id"]: a for a in (await http.get("/v1/agents")).json()}
        assert {i for i in saved if i.startswith("imp-")} == {"imp-ann", "imp-cy"}
        assert saved["imp-cy"]["max_load"] == 5 and saved["imp-cy"]["languages"] == ["en", "zh"]

        (tmp_path / "good.csv").write_text(
            MIXED_CSV.splitlines()[0] + "\n" + MIXED_CSV.splitlines()[1]
        )
        code, stdout, stderr = await switchboard(
            "agents", "import", "--atomic", str(tmp_path / "good.csv"), env=env
        )
        assert code == 0 and "1 of 1 agents saved" in stdout and not stderr


async def test_dead_letters_are_replayed_once_after_a_fix(
    common, ids, broker, topics, database_url
):
    """A message the router once gave up on (say, a bug since fixed) goes back on its topic."""
    from sqlalchemy import text

    from shared.db import make_engine

    app = create_app(RouterSettings(**common))
    message = inbound("cli-replayed", "withdrawal missing")
    letter = DeadLetter(
        source_topic=topics.inbound,
        source_partition=0,
        source_offset=7,
        consumer_group="switchboard-router",  # the router's default group
        key=message.conversation_key,
        value=message.model_dump_json(),
        reason="handler failed 3 times: KeyError('customer')",
        dead_lettered_at=datetime.now(UTC),
    )
    other = letter.model_copy(
        update={"consumer_group": "switchboard-metrics", "source_topic": "elsewhere"}
    )
    await produce(
        broker.bootstrap,
        topics.dead_letter,
        [("k", letter.model_dump_json().encode()), ("k", other.model_dump_json().encode())],
    )
    env = {
        "SWITCHBOARD_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SWITCHBOARD_TOPICS__NAMESPACE": topics.namespace,
    }
    engine = make_engine(database_url, pool_size=1)
    async with serving(app):
        # As the README shows it: the service's short name picks its default group.
        code, stdout, _ = await switchboard(
            "dead-letters", "replay", "--consumer-group", "router", "--dry-run", env=env
        )
        assert code == 0 and "would replay 1 of 2" in stdout
        code, stdout, _ = await switchboard(
            "dead-letters", "replay", "--consumer-group", "switchboard-router", "--dry-run", env=env
        )
        assert code == 0 and "would replay 1 of 2" in stdout
        code, stdout, _ = await switchboard(
            "dead-letters", "replay", "--consumer-group", "router", env=env
        )
        assert code == 0 and "replayed 1 of 2" in stdout

        async def routed():
            async with engine.connect() as conn:
                return (
                    await conn.execute(
                        text("SELECT count(*) FROM router.messages WHERE id = :id"),
                        {"id": message.message_id},
                    )
                ).scalar()

        assert await eventually(routed, what="the replayed message routed") == 1
        code, stdout, _ = await switchboard("dead-letters", "replay", env=env)
        assert code == 0 and "replayed 0 of 0" in stdout  # each letter is replayed once
    await engine.dispose()
