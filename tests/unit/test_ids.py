import uuid

from hypothesis import given
from hypothesis import strategies as st

from shared.events import Channel
from shared.ids import ID_NAMESPACE, conversation_key_for, derived_id, message_id_for


def test_a_retried_webhook_gets_the_same_message_id():
    assert message_id_for(Channel.TELEGRAM, "123") == message_id_for(Channel.TELEGRAM, "123")


def test_message_ids_differ_across_channels_and_provider_ids():
    ids = {
        message_id_for(Channel.TELEGRAM, "123"),
        message_id_for(Channel.WHATSAPP, "123"),
        message_id_for(Channel.TELEGRAM, "124"),
    }
    assert len(ids) == 3


def test_conversation_key_names_channel_and_thread():
    assert conversation_key_for(Channel.EMAIL, "thread-9") == "email:thread-9"


@given(
    st.lists(
        st.one_of(st.text(), st.uuids(), st.integers(), st.none(), st.sampled_from(Channel)),
        min_size=1,
        max_size=5,
    )
)
def test_derived_ids_are_uuid5_of_the_joined_parts(parts):
    """Ids are stored and published: the fast derivation must equal uuid.uuid5 bit for bit."""
    expected = uuid.uuid5(ID_NAMESPACE, "\x1f".join(str(p) for p in parts))
    derived = derived_id(*parts)
    assert derived == expected
    assert str(derived) == str(expected)
    assert (derived.version, derived.variant) == (5, uuid.RFC_4122)
    assert hash(derived) == hash(expected)
