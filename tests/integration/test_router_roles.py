"""The router split in two processes' roles, as deployed: ``api`` serves agents, ``intake``
applies the inbound messages and sweeps the queue; the two meet only in the database."""

import asyncio

from services.router.app import create_app
from services.router.settings import RouterSettings
from tests.conftest import eventually, running
from tests.integration.routerkit import assignments, inbound, put_agent, send


async def test_an_intake_process_assigns_and_wakes_a_long_poll_waiting_in_an_api_process(
    common, ids, broker, topics
):
    api = create_app(RouterSettings(**common, role="api"))
    intake = create_app(RouterSettings(**common, role="intake", queue_sweep_interval_s=0.2))
    agent = ids.agent_ids[0]
    async with running(api) as client:
        # An API router consumes nothing, and its readiness does not wait for a consumer.
        assert not hasattr(api.state, "consume_loop")
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert "consumer" not in ready.json()["checks"]
        await put_agent(client, ids, agent)
        empty = await assignments(client, ids, agent)
        poll = asyncio.create_task(assignments(client, ids, agent, wait=20, since=empty["cursor"]))
        await send(broker, topics, inbound("split-1", "my withdrawal is stuck"))
        await asyncio.sleep(1)
        assert not poll.done()  # nobody applies the message yet
        async with running(intake) as intake_client:
            got = await asyncio.wait_for(poll, 20)
            assert [c["conversation_key"] for c in got["conversations"]] == ["chat:split-1"]
            # The intake reports its consumer's progress on its own port.
            assert intake.state.consume_loop.applied == 1
            ready = await intake_client.get("/readyz")
            assert ready.json()["checks"]["consumer"] == "ok"
            # What waited for a free slot is assigned once the agent has room.
            await send(broker, topics, inbound("split-2", "hello"), inbound("split-3", "hi"))

            async def three() -> bool:
                found = await assignments(client, ids, agent)
                return len(found["conversations"]) == 3

            await client.put(
                f"/v1/agents/{agent}",
                headers=ids.as_ops,
                json={
                    "name": agent,
                    "skills": {"general": 2, "funds": 2, "security": 2},
                    "languages": ["en"],
                    "capacity": {"chat": 3},
                },
            )
            await eventually(three, what="three conversations assigned")
