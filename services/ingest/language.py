"""Language detection from the text (py3langid, whose model ships in its wheel), with the
provider's or customer's hint deciding when the text is too short or too ambiguous to tell."""

from __future__ import annotations

from functools import lru_cache

from py3langid.langid import MODEL_FILE, LanguageIdentifier

# The languages a global crypto desk sees; detection chooses among these only.
LANGUAGES = ["en", "zh", "ja", "ko", "ru", "vi", "es", "pt", "fr", "de", "tr", "id", "th", "ar"]
SURE = 0.8  # above this the text decides even against a hint
LIKELY = 0.5  # above this the text decides when there is no hint
# The detector walks every byte in Python: the first characters tell the language as well as
# all of them, and a 20,000-character message would otherwise cost milliseconds.
MAX_CHARS = 1000


@lru_cache(maxsize=1)
def _identifier() -> LanguageIdentifier:
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(LANGUAGES)
    return identifier


def detect_language(text: str, *, hint: str | None = None) -> str | None:
    """The text's language (ISO 639-1), the hint's when the text cannot tell, else None."""
    hint = hint.split("-", 1)[0].lower() if hint else None
    text = text[:MAX_CHARS]
    if not _has_letters(text, 3):
        return hint
    language, probability = _identifier().classify(text)
    if probability >= SURE or (probability >= LIKELY and hint is None):
        return str(language)
    return hint


def _has_letters(text: str, count: int) -> bool:
    for ch in text:
        if ch.isalpha():
            count -= 1
            if count == 0:
                return True
    return False
