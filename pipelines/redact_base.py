"""Small pieces every recogniser of the redact stage shares."""

from __future__ import annotations

from presidio_analyzer import RecognizerResult
from spacy.lang.en.stop_words import STOP_WORDS

PERSON = "PERSON"
STREET_ADDRESS = "STREET_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"


def result(entity: str, start: int, end: int, score: float, why: str) -> RecognizerResult:
    """A Presidio result that names the rule which produced it (for explanations, never logged)."""
    return RecognizerResult(entity, start, end, score, analysis_explanation=None,
                            recognition_metadata={"recognizer_name": why})


def case_mode(text: str) -> bool:
    """True when capitals carry information (mixed case); False for all-lower/all-upper."""
    return any(c.isupper() for c in text) and any(c.islower() for c in text)


def is_cap(word: str) -> bool:
    return bool(word) and word[0].isupper()


STOP = frozenset(STOP_WORDS) | {"st"}  # "st" only as a street type, never a name word
UNIT = r"(?i:apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|bldg|building|box|#)\.?"
"""Unit words: "Apt. 5", "Suite 300" (part of an address, never of a name)."""
ORG_WORDS = frozenset(
    """inc ltd llc llp plc gmbh ag sa bv co corp corporation company group bank university
    consulting software services solutions technologies systems partners associates
    foundation institute agency studio labs""".split()
)
"""Last words of a company's name ("Blue Fjord Ltd"): what ends with one is no person."""
