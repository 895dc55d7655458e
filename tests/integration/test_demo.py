"""``make demo`` on a desk that already holds conversations (a restart on an existing
``.run/pgdata``) touches and reports only the conversations it creates."""

import httpx

from devtools.demo import MESSAGES, run_demo
from tests.conftest import eventually
from tests.integration.deskkit import make_run_desk


async def test_the_demo_leaves_earlier_conversations_alone_and_reports_only_its_own(common, capsys):
    async with make_run_desk(common) as desk, httpx.AsyncClient(timeout=30) as http:
        # An earlier run's conversation, still open and assigned to alice.
        await http.put(
            f"{desk.router}/v1/agents/alice",
            headers=desk.bearer("ops"),
            json={
                "name": "Alice",
                "skills": {"security": 4, "general": 2},
                "languages": ["en"],
                "capacity": {"chat": 3},
            },
        )
        await http.put(
            f"{desk.router}/v1/agents/alice/status",
            headers=desk.bearer("agent-alice"),
            json={"status": "online"},
        )
        posted = await http.post(
            f"{desk.ingest}/v1/messages",
            headers=desk.bearer("ingest"),
            json={
                "channel": "chat",
                "channel_message_id": "earlier-1",
                "conversation_ref": "earlier-1",
                "customer": {"id": "earlier-customer"},
                "text": "my account was hacked",
            },
        )
        assert posted.status_code == 202

        async def earlier():
            answer = await http.get(
                f"{desk.router}/v1/conversations",
                params={"key": "chat:earlier-1"},
                headers=desk.bearer("ops"),
            )
            return answer.status_code == 200 and answer.json()["agent_id"] and answer.json()

        before = await eventually(earlier, timeout=30, what="the earlier conversation assigned")

        summary = await run_demo(
            desk.keys, ingest=desk.ingest, router=desk.router, metrics=desk.metrics, run="t1"
        )

        after = await earlier()
        assert after["state"] == before["state"] and after["agent_id"] == "alice"
        assert [m["direction"] for m in after["messages"]] == ["inbound"]  # no reply
    assert summary["conversations"] == len(MESSAGES)
    assert summary["first_response_s"]["count"] == summary["resolution_s"]["count"] == 5
    printed = capsys.readouterr().out
    assert "figures of the 5 conversations opened while the demo ran" in printed
    assert printed.count(" got ") == 5  # the agents answered the demo's five, not the earlier one
