"""Long-polls: capped per agent, free while they wait, woken by notifications only."""

import asyncio

import pytest
from sqlalchemy import event, text

from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, running
from tests.integration.routerkit import assignments, inbound, put_agent, scalar, send

CAP = 4


@pytest.fixture
def router_app(common):
    return create_app(
        RouterSettings(**common, db_pool_size=2, max_waits_per_agent=CAP, queue_sweep_interval_s=5)
    )


async def execute(db, sql, **params):
    async with db.begin() as conn:
        await conn.execute(text(sql), params)


async def listener_connected(db):
    async def listening():
        return await scalar(
            db,
            """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND application_name = 'switchboard-router-wakeups'""",
        )

    await eventually(listening, what="the wake-up listener connected")


def count_inbox_checks(app) -> list[str]:
    """Every statement the router runs that reads an agent's inbox cursor."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        if "inbox_version FROM router.agents" in statement:
            seen.append(statement)

    event.listen(app.state.engine.sync_engine, "before_cursor_execute", record)
    return seen


async def test_many_waits_of_one_agent_answer_the_oldest_and_query_nothing_while_waiting(
    router_app, ids, broker, topics, db
):
    greedy, other = ids.agent_ids[:2]
    async with running(router_app) as client:
        await listener_connected(db)
        await put_agent(client, ids, greedy)
        await put_agent(client, ids, other)
        checks = count_inbox_checks(router_app)
        cursor = (await assignments(client, ids, greedy))["cursor"]
        polls = [
            asyncio.create_task(assignments(client, ids, greedy, wait=30, since=cursor))
            for _ in range(200)
        ]

        async def all_but_the_cap_answered():
            return sum(p.done() for p in polls) >= len(polls) - CAP

        await eventually(all_but_the_cap_answered, what="waits past the cap answered")
        assert sum(not p.done() for p in polls) == CAP
        superseded = [p.result() for p in polls if p.done()]
        assert all(a["conversations"] == [] and a["cursor"] == cursor for a in superseded)
        # Every wait checked the inbox once when it came, and not again while it waits.
        assert len(checks) == 1 + len(polls)
        await asyncio.sleep(1.5)
        assert len(checks) == 1 + len(polls)
        # Another agent's poll is served meanwhile, by the same small pool.
        assert (await assignments(client, ids, other))["conversations"] == []

        await send(broker, topics, inbound("greedy", "my deposit is missing"))
        woken = await asyncio.wait_for(asyncio.gather(*polls[-CAP:]), 15)
        assert all(len(a["conversations"]) == 1 and a["cursor"] > cursor for a in woken)
        assert router_app.state.wakeups.waiting_agents() == 0


async def test_polls_for_agents_that_do_not_exist_leave_nothing_behind(router_app, ids):
    async with running(router_app) as client:
        answers = await asyncio.gather(
            *(
                client.get(f"/v1/agents/ghost-{i}/assignments?wait=5", headers=ids.as_ops)
                for i in range(50)
            )
        )
        assert {a.status_code for a in answers} == {404}
        assert router_app.state.wakeups.waiting_agents() == 0


async def test_a_listener_that_reconnects_wakes_every_waiter_to_check_once(router_app, ids, db):
    agent = ids.agent_ids[0]
    async with running(router_app) as client:
        await put_agent(client, ids, agent)
        await listener_connected(db)
        cursor = (await assignments(client, ids, agent))["cursor"]
        poll = asyncio.create_task(assignments(client, ids, agent, wait=20, since=cursor))
        # News whose notification is lost: nothing tells the waiter, and it does not look.
        await execute(
            db,
            "UPDATE router.agents SET inbox_version = inbox_version + 1 WHERE id = :id",
            id=agent,
        )
        await asyncio.sleep(1.5)
        assert not poll.done()
        await scalar(
            db,
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = current_database()
                 AND application_name = 'switchboard-router-wakeups'""",
        )
        answer = await asyncio.wait_for(poll, 15)
        assert answer["cursor"] == cursor + 1
