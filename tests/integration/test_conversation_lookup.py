"""What ingest answers finds the conversation in the router: a message posted to the real
ingest, applied by the real router, is found by its conversation_key and its message_id, by
ops and by the conversation's own agent only."""

import uuid

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from tests.conftest import running
from tests.integration.routerkit import act, assignments, put_agent


async def test_the_key_and_message_id_ingest_answers_find_the_conversation(common, ids):
    mine, other = ids.agent_ids[:2]
    async with (
        running(create_router(RouterSettings(**common))) as router,
        running(create_ingest(IngestSettings(**common))) as ingest,
    ):
        await put_agent(router, ids, mine, skills={"general": 1})
        posted = await ingest.post(
            "/v1/messages",
            headers=ids.as_ingest,
            json={
                "channel": "chat",
                "channel_message_id": uuid.uuid4().hex,
                "conversation_ref": f"visitor-{uuid.uuid4().hex[:8]}",
                "customer": {"id": "c1"},
                "text": "hello, I need help",
            },
        )
        assert posted.status_code == 202, posted.text
        key, message_id = posted.json()["conversation_key"], posted.json()["message_id"]
        conv_id = (await assignments(router, ids, mine, wait=15))["conversations"][0]["id"]
        await put_agent(router, ids, other, skills={"general": 1})
        reply = await act(router, ids, mine, conv_id, "replies", text="on it")

        def find(headers, **params):
            return router.get("/v1/conversations", params=params, headers=headers)

        by_key = await find(ids.as_ops, key=key)
        by_message = await find(ids.as_agent(mine), message_id=message_id)
        by_reply = await find(ids.as_ops, message_id=reply.json()["message_id"])
        others_key = await find(ids.as_agent(other), key=key)
        others_message = await find(ids.as_agent(other), message_id=message_id)
        unknown_key = await find(ids.as_ops, key="chat:nobody-ever")
        unknown_message = await find(ids.as_ops, message_id=str(uuid.uuid4()))
        neither = await find(ids.as_ops)
        both = await find(ids.as_ops, key=key, message_id=message_id)

    assert by_key.status_code == 200, by_key.text
    assert (by_key.json()["id"], by_key.json()["conversation_key"]) == (conv_id, key)
    assert by_message.status_code == 200 and by_message.json()["id"] == conv_id
    assert by_message.json()["messages"][0]["id"] == message_id
    assert by_reply.json()["id"] == conv_id
    assert [a.status_code for a in (others_key, others_message)] == [404, 404]
    assert [a.status_code for a in (unknown_key, unknown_message)] == [404, 404]
    assert [a.status_code for a in (neither, both)] == [400, 400]
