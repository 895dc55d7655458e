"""Language detection from the text (py3langid, whose model ships in its wheel), with the
provider's or customer's hint deciding when the text is too short or too ambiguous to tell."""

from __future__ import annotations

import math
import unicodedata
from functools import lru_cache

import numpy as np
from py3langid.langid import MODEL_FILE, LanguageIdentifier

# The languages a global crypto desk sees; detection chooses among these only.
LANGUAGES = ["en", "zh", "ja", "ko", "ru", "vi", "es", "pt", "fr", "de", "tr", "id", "th", "ar"]
SURE = 0.8  # above this the text decides even against a hint
LIKELY = 0.5  # above this the text decides when there is no hint
# The detector walks every byte in Python: the first characters tell the language as well as
# all of them, and a 20,000-character message would otherwise cost milliseconds.
MAX_CHARS = 1000


class Classifier:
    """py3langid's naive Bayes classification (``LanguageIdentifier.classify`` with
    normalized probabilities) over ``languages``, with fewer array operations per text: the
    features are counted as the bytes are walked, the table is a contiguous float32 copy of
    the model's, and the softmax of 14 scores is plain Python. It ran once per message on
    ingest's hot path at an eighth of its CPU (issue 14); a test holds it to the library's."""

    def __init__(self, languages: list[str]) -> None:
        identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        identifier.set_languages(languages)
        self.classes: list[str] = list(identifier.nb_classes)
        self._nextmove = identifier.tk_nextmove
        self._rowbase = [row << 8 for row in identifier.tk_row]
        self._output = identifier.tk_output
        self._table = np.ascontiguousarray(identifier.nb_ptc, dtype=np.float32)
        self._prior = np.asarray(identifier.nb_pc, dtype=np.float32)

    def classify(self, text: str) -> tuple[str, float]:
        """The most likely language of ``text`` and its probability."""
        if text.isupper():
            text = text.lower()
        data = unicodedata.normalize("NFC", text).encode("utf-8", errors="surrogatepass")
        counts = self._features(data)
        if not counts:
            return self.classes[0], 1 / len(self.classes)  # uniform: nothing to go on
        features = np.fromiter(counts, dtype=np.intp, count=len(counts))
        weights = np.log1p(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
        scores: list[float] = (weights @ self._table[features] + self._prior).tolist()
        best = max(range(len(scores)), key=scores.__getitem__)
        # The library's softmax at temperature sqrt(bytes), of the best score only.
        scale, top = 1 / math.sqrt(len(data)), scores[best]
        return self.classes[best], 1 / sum(math.exp((s - top) * scale) for s in scores)

    def _features(self, data: bytes) -> dict[int, int]:
        """Each feature's count in ``data``, by the model's byte automaton."""
        nextmove, rowbase, output = self._nextmove, self._rowbase, self._output
        state = 0
        counts: dict[int, int] = {}
        for byte in data:
            state = nextmove[rowbase[state] + byte]
            feature = output[state]
            if feature >= 0:
                counts[feature] = counts.get(feature, 0) + 1
        return counts


@lru_cache(maxsize=1)
def classifier() -> Classifier:
    return Classifier(LANGUAGES)


def detect_language(text: str, *, hint: str | None = None) -> str | None:
    """The text's language (ISO 639-1), the hint's when the text cannot tell, else None."""
    hint = hint.split("-", 1)[0].lower() if hint else None
    text = text[:MAX_CHARS]
    if not _has_letters(text, 3):
        return hint
    language, probability = classifier().classify(text)
    if probability >= SURE or (probability >= LIKELY and hint is None):
        return language
    return hint


def _has_letters(text: str, count: int) -> bool:
    for ch in text:
        if ch.isalpha():
            count -= 1
            if count == 0:
                return True
    return False
