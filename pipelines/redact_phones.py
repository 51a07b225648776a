"""Phone numbers that libphonenumber rejects or scores too low to trust alone.

Presidio's phone recogniser parses numbers for a handful of regions and gives
0.4 without a phone word nearby; national formats of other countries ("0487
23 46 71", "06-24312407", "(85) 5986-8343") and numbers glued to a label
("751-954-9268-Fax") slip through. Here a number is trusted by its shape: a
leading + or 00, a parenthesised area code, an extension, a trunk prefix 0,
three or more digit groups, or the North American layouts; or by a phone word
before it or a label after it. Thousands ("1 200 000"), dates, IPv4 addresses
and identifiers glued to letters stay.
"""

from __future__ import annotations

import regex as re
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pipelines.redact_base import PHONE_NUMBER, Recognizer, result

LOOSE_PHONE = re.compile(
    r"(?<![\w+\-.])(?:(?:\+|00|\(\+)\d{1,3}\)?[\s.\-]?(?:\(\d{1,5}\)[\s.\-]?)?\d{1,12}(?:[ ./\-]\d{2,8}){0,5}"
    r"|(?:\d[ .\-])?(?:\(\d{1,5}\)[\s.\-]?)?\d{2,5}(?:[ ./\-]\d{2,8}){1,5}|\(\d{2,5}\)[\s.\-]?\d{4,10}|\d{7,15})"
    r"(?:\s?(?i:x|ext\.?|extension)\s?\d{1,6})?(?!\w|-\d|\.\d)"
)
_PHONE_CUE = re.compile(
    r"(?i:\b(?:phone|tel|telephone|mobile|mob|cell|cellphone|call|fax|desk|contact|reach|answer(?:ing)?|"
    r"whatsapp|sms|text me|dial|ring|landline)\b|\b(?:my|his|her|your|our|their) (?:registered )?number\b|"
    r"\b(?:my|his|her|your|our|their) registered\b)"
)
_PHONE_LABEL = r"(?i:office|mobile|cell|fax|home|work|desk|direct|main)"
_PHONE_AFTER = re.compile(rf"[ \t\-]*\(?{_PHONE_LABEL}\b")  # "69 987 88 37 office", "751-954-9268-Fax"
_PHONE_BEFORE = re.compile(rf"\b{_PHONE_LABEL}[ \t]*[:.]?[ \t]*$")  # "Office: 020 7946 0958"
_NANP = re.compile(r"\(?\d{3}\)?[ .\-]?\d{3}[ .\-]\d{4}|\d{3}[ .\-]\d{4}")  # 415.555.0132, (790)091-7442, 785 8949
_DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_THOUSANDS = re.compile(r"\d{1,3}(?:[ ,.]\d{3})+")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_EXTENSION = re.compile(r"(?i)\d\s?(?:x|ext)")


def phone_at(line: str) -> bool:
    """A line that opens with a phone number (ends a postal block); "13 70486" is a house number and a
    postcode, not a phone."""
    m = LOOSE_PHONE.match(line.lstrip(" \t?*•-+("))
    return bool(m) and sum(c.isdigit() for c in m.group()) >= 7 and _shaped(m.group())


def _shaped(value: str) -> bool:
    groups = re.findall(r"\d+", re.split(r"(?i)x|ext", value)[0])
    return (
        value.startswith(("+", "(", "00", "1 (", "1-", "1."))
        or bool(_EXTENSION.search(value) or _NANP.fullmatch(value))
        or (value.startswith("0") and len(groups) >= 2)
        or len(groups) >= 3
    )


class LoosePhoneRecognizer(Recognizer):
    """Phone numbers by shape or by a phone word nearby (see the module docstring)."""

    ENTITIES = (PHONE_NUMBER,)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        for m in LOOSE_PHONE.finditer(text):
            value = m.group()
            digits = sum(c.isdigit() for c in re.split(r"(?i)x|ext", value)[0])
            if not 6 <= digits <= 15 or _DATE_LIKE.fullmatch(value) or _IPV4.fullmatch(value):
                continue
            line_before = text[max(0, m.start() - 40) : m.start()].split("\n")[-1]
            cue = bool(
                _PHONE_CUE.search(line_before) or _PHONE_BEFORE.search(line_before)
                or _PHONE_AFTER.match(text, m.end())
            )
            if (digits < 7 or value.isdigit()) and not cue:
                continue  # six digits, or one unbroken run, are a phone number only when something says so
            if _THOUSANDS.fullmatch(value) and not cue:
                continue
            score = 0.65 if cue else (0.55 if _shaped(value) else 0.2)
            results.append(result(PHONE_NUMBER, m.start(), m.end(), score, "loose phone"))
        return results
