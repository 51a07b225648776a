"""Small pieces every recogniser of the redact stage shares."""

from __future__ import annotations

import regex as re
from presidio_analyzer import LocalRecognizer, RecognizerResult
from spacy.lang.en.stop_words import STOP_WORDS

PERSON = "PERSON"
STREET_ADDRESS = "STREET_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"
CREDIT_CARD = "CREDIT_CARD"


class Recognizer(LocalRecognizer):
    """One of ours: named after its class, for the ``ENTITIES`` it finds; nothing for Presidio to load
    (patterns compile on import, the lexicons load on first use)."""

    ENTITIES: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__(supported_entities=list(self.ENTITIES), name=type(self).__name__)

    def load(self) -> None:  # noqa: D102 - see the class docstring
        pass


def result(entity: str, start: int, end: int, score: float, why: str) -> RecognizerResult:
    """A Presidio result that names the rule which produced it (for explanations, never logged)."""
    return RecognizerResult(entity, start, end, score, recognition_metadata={"recognizer_name": why})


def case_mode(text: str) -> bool:
    """True when capitals carry information (mixed case); False for all-lower/all-upper."""
    return any(c.isupper() for c in text) and any(c.islower() for c in text)


PERSON_FIELDS = re.compile(
    r"(?i:name|person|people|customer|client|contact|author|owner|employee|staff|user|member|patient|"
    r"manager|assignee|reporter|signed|signatory|sender|recipient|attendee|participant|student|player|"
    r"passenger|guest|applicant|tenant|cardholder|holder|attn|attention|who|by|from|to|cc)"
)
"""Words of a form's field or a table's column that holds people ("Customer", "Contact person")."""

_FIELD = re.compile(r"[ \t]*:(?![ \t]*\\?[\"“])")


def field_label_at(text: str, end: int) -> bool:
    """A colon follows ``end`` that opens a form's field ("Phone: ..."), not a speaker's words
    ('Hunter: "Where were you?"')."""
    return bool(_FIELD.match(text, end))


_OPENERS = frozenset(" \t\"'“‘(*•-")
"""What may stand between a sentence's end and its first word: spaces, quotes, a bullet."""


def opens_sentence(text: str, pos: int) -> bool:
    """The word at ``pos`` opens a sentence, a line or a field ("Name: Lucas"), after any quotes or
    bullets. One answer for every recogniser; a character test, so it costs nothing per token."""
    i = pos
    while i > 0 and text[i - 1] in _OPENERS:
        i -= 1
    if i == 0 or text[i - 1] == "\n" or any(c in "\"“" for c in text[i:pos]):
        return True  # '... "Lucas is here"': a quotation opens a sentence of its own
    return i < pos and text[i - 1] in ".!?:"


def is_cap(word: str) -> bool:
    return bool(word) and word[0].isupper()


STOP = frozenset(STOP_WORDS) | {"st"}  # "st" only as a street type, never a name word
UNIT = r"(?i:apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|bldg|building|box|#)\.?"
"""Unit words: "Apt. 5", "Suite 300" (part of an address, never of a name)."""
ORG_WORDS = frozenset(
    """inc ltd llc llp plc gmbh ag sa bv co corp corporation company group bank university
    consulting software services solutions technologies systems partners associates
    foundation institute agency studio labs limited incorporated holdings industries enterprises""".split()
)
"""Last words of a company's name ("Blue Fjord Ltd"): what ends with one is no person."""
