"""Payment card numbers in any grouping, checked by their Luhn digit.

Presidio's card pattern wants four groups of 3-5 digits and a first digit of 1
or 3-6, so Mastercard's 2-series ("2223 0031 2200 3222"), Diners' 14 digits as
4-4-4-2 and 13-digit Visas ("4222-2222-2222-2") slip through. Here any run of
13-19 digits in groups split by single spaces or dashes is a card when its
issuer digit is 2-6 and the Luhn check holds: about one random digit run in ten
passes the check, and none of the length of a phone number does. Maestro cards
may have 12 digits, as many as an order or account number: those count only with
a card word before them ("block card no 560824628195").
"""

from __future__ import annotations

import regex as re
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pipelines.redact_base import CREDIT_CARD, Recognizer, result

_CARD_CUE = re.compile(r"(?i:\b(?:card|cards|credit|debit|cc|maestro|visa|mastercard|amex|billing|payment)\b)")
_CARD = re.compile(r"(?<![\w+\-.])[2-6]\d{1,5}(?:[ \-]?\d{1,6}){1,6}(?![\w]|[\-.]\d)")


def luhn(digits: str) -> bool:
    """The check digit of ISO/IEC 7812: every second digit from the right doubled."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class LuhnCardRecognizer(Recognizer):
    """Card numbers of 12-19 digits in any grouping (see the module docstring)."""

    ENTITIES = (CREDIT_CARD,)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            long_enough = 13 <= len(digits) <= 19 or (
                len(digits) == 12 and bool(_CARD_CUE.search(text, max(0, m.start() - 40), m.start()))
            )
            if long_enough and luhn(digits) and len(set(digits)) > 1:
                results.append(result(CREDIT_CARD, m.start(), m.end(), 0.6, "luhn card"))
        return results
