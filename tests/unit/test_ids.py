from shared.events import Channel, conversation_key_for, message_id_for


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
