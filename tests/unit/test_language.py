import pytest

from services.ingest.language import detect_language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("我的提现三个小时还没到账", "zh"),
        ("my deposit did not arrive yet", "en"),
        ("出金ができません", "ja"),
        ("출금이 안 돼요", "ko"),
        ("Привет, помогите с выводом", "ru"),
        ("Tôi không rút được tiền", "vi"),
        ("hola, necesito ayuda con mi retiro", "es"),
    ],
)
def test_short_texts_are_detected_in_the_desk_languages(text, language):
    assert detect_language(text) == language


def test_the_channel_hint_decides_when_the_text_is_too_short_to_tell():
    assert detect_language("ok", hint="ko") == "ko"
    assert detect_language("hi", hint="pt-BR") == "pt"
    assert detect_language("??", hint=None) is None


def test_a_clear_text_wins_over_a_wrong_hint():
    assert detect_language("我的账户被盗了，请帮忙", hint="en") == "zh"
