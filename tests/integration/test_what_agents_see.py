"""What an agent frontend sees of a customer's message besides its text (issue 15): deliveries
posted to the real ingest app, published on the real broker, applied by the real router, and
read back from the router's conversation and assignment APIs."""

import pytest

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from shared.events import Channel
from shared.ids import message_id_for
from tests.conftest import eventually, running
from tests.integration.channelkit import META_SECRET, META_VERIFY, TG_SECRET
from tests.integration.routerkit import assignments, put_agent
from tests.integration.test_channel_fidelity import (
    TG_HEADERS,
    WA_EDIT,
    WA_ORIGINAL,
    post_whatsapp,
    tg_message,
    whatsapp,
)

VOICE = {"file_id": "AwACAgVoice", "file_unique_id": "v", "duration": 12, "mime_type": "audio/ogg"}
SHEENA = [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}]


@pytest.fixture
def ingest_app(common):
    return create_ingest(
        IngestSettings(
            **common,
            telegram_secret_token=TG_SECRET,
            meta_app_secret=META_SECRET,
            meta_verify_token=META_VERIFY,
        )
    )


@pytest.fixture
def router_app(common):
    return create_router(RouterSettings(**common))


async def post_telegram(client, update_id, message):
    answer = await client.post(
        "/v1/channels/telegram/webhook",
        json={"update_id": update_id, "message": message},
        headers=TG_HEADERS,
    )
    assert answer.status_code == 200, answer.text


async def inbox_once(router, ids, agent, *, conversations, messages):
    """The agent's assignments once it holds ``conversations`` with ``messages`` in all."""

    async def probe():
        got = (await assignments(router, ids, agent))["conversations"]
        held = sum(len(c["messages"]) for c in got)
        return got if len(got) == conversations and held == messages else None

    return await eventually(probe, what=f"{messages} messages in {conversations} conversations")


async def test_a_voice_note_keeps_its_file_id_and_an_edit_points_to_the_message_it_edits(
    ingest_app, router_app, ids
):
    agent = ids.agent_ids[0]
    async with running(router_app) as router, running(ingest_app) as ingest:
        await put_agent(
            router, ids, agent, languages=["en", "ja"], capacity={"telegram": 5, "whatsapp": 5}
        )
        await post_telegram(ingest, 1, tg_message(41, voice=VOICE))
        await post_whatsapp(ingest, whatsapp([WA_ORIGINAL], SHEENA))
        await post_whatsapp(ingest, whatsapp([WA_EDIT], SHEENA))
        inbox = await inbox_once(router, ids, agent, conversations=2, messages=3)

        by_channel = {c["channel"]: c for c in inbox}
        (voice,) = by_channel["telegram"]["messages"]
        assert voice["text"] == "[voice message 0:12]"
        assert voice["attachments"] == [
            {
                "kind": "voice",
                "ref": "AwACAgVoice",
                "name": None,
                "content_type": "audio/ogg",
                "size": None,
            }
        ]
        assert voice["edit_of"] is None and by_channel["telegram"]["group"] is None

        chat = by_channel["whatsapp"]
        view = await router.get(f"/v1/conversations/{chat['id']}", headers=ids.as_agent(agent))
        assert view.status_code == 200, view.text
        original, edited = view.json()["messages"]
        assert original["id"] == str(message_id_for(Channel.WHATSAPP, "wamid.ORIG"))
        assert (original["text"], original["edit_of"], original["attachments"]) == (
            "I sent 2 BTC",
            None,
            [],
        )
        assert (edited["text"], edited["edit_of"]) == ("I sent 3 BTC", original["id"])
        assert view.json()["messages"] == chat["messages"]


async def test_a_group_chat_shows_its_latest_title_and_each_member_as_author(
    ingest_app, router_app, ids
):
    agent = ids.agent_ids[0]
    group = {"id": -1001234567890, "type": "supergroup", "title": "VIP traders"}
    renamed = {**group, "title": "VIP traders desk"}
    other_member = {"id": 5002, "is_bot": False, "first_name": "Ben", "language_code": "en"}
    async with running(router_app) as router, running(ingest_app) as ingest:
        await put_agent(router, ids, agent, languages=["en", "ja"], capacity={"telegram": 5})
        await post_telegram(ingest, 1, tg_message(1, group, voice=VOICE))
        await post_telegram(
            ingest, 2, {**tg_message(2, renamed, text="withdrawals stuck"), "from": other_member}
        )
        (conv,) = await inbox_once(router, ids, agent, conversations=1, messages=2)

        assert conv["conversation_key"] == "telegram:-1001234567890"
        assert conv["group"] == "VIP traders desk"
        assert [m["author"] for m in conv["messages"]] == ["tg:5001", "tg:5002"]
        assert conv["messages"][0]["attachments"][0]["ref"] == "AwACAgVoice"
