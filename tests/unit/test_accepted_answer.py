"""POST /v1/messages writes its 202 answer by hand: it must be Accepted's JSON exactly."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.ingest.api import _accepted
from services.ingest.normalize import Accepted
from shared.events import Channel, Customer, InboundMessage


@given(st.text(st.characters(exclude_categories=["Cs"])), st.uuids())
def test_the_answer_is_accepteds_json_byte_for_byte(key, message_id):
    event = InboundMessage(
        event_id=message_id,
        occurred_at=datetime.now(UTC),
        message_id=message_id,
        channel=Channel.CHAT,
        channel_message_id="m-1",
        conversation_key=key,
        customer=Customer(id="c-1"),
        text="hello",
    )
    expected = Accepted(message_id=message_id, conversation_key=key).model_dump_json()
    assert _accepted(event) == expected.encode()
