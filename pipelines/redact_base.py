"""Small pieces every recogniser of the redact stage shares."""

from __future__ import annotations

from presidio_analyzer import RecognizerResult

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
