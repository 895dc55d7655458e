import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from services.ingest.language import LANGUAGES, classifier, detect_language


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


@pytest.fixture(scope="module")
def library():
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(LANGUAGES)
    return identifier


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.text(
        st.sampled_from(
            "abcdefghijklmnopqrstuvwxyzABCÉéàçñüöß 我的提现账户アカウント출금이привет,.!?0123"
        ),
        max_size=60,
    )
)
def test_the_classifier_decides_as_the_library_does(library, text):
    language, probability = classifier().classify(text)
    expected, expected_probability = library.classify(text)
    assert probability == pytest.approx(expected_probability, abs=1e-5)
    assert language == expected or expected_probability < 0.5  # a near tie may go either way
