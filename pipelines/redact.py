"""PII redaction: replace personal identifiers with keyed pseudonyms.

Why pseudonyms and not blanks: the same value maps to the same token in every
document (``<PERSON_3f9a1c>``), so search and the entity graph still connect
facts about "someone", while without the secret a token cannot be tied back to
the value. Only identifiers of a person are replaced; cities, countries,
organisations and dates stay, because they are not personal on their own and
the entity graph is built from them.

Stock Presidio with the small spaCy model lets ~21% of identifiers through and
finds no street address at all, so this module adds recognizers for street
addresses (US/UK, continental "Name-straat 12", multi-line postal blocks),
loosely formatted phone numbers, and names given away by their context
("my name is", "Mrs.", "Arne's address", "X lives at").
"""

from __future__ import annotations

from pipelines import runtime  # noqa: I001  (first: keeps presidio offline)

import bisect
import functools
import hashlib
import hmac
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import regex as re
import spacy
from presidio_analyzer import (
    AnalyzerEngine,
    LocalRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    SpacyRecognizer,
    UsLicenseRecognizer,
    UsSsnRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from spacy.lang.en.stop_words import STOP_WORDS
from spacy.attrs import IDX, LOWER
from spacy.language import Language
from spacy.tokens import Doc

from pipelines.redact_names import ProperNounRecognizer, common, load_tagged, plural_noun
from pipelines.redact_phones import LoosePhoneRecognizer, phone_at

PERSON = "PERSON"
STREET_ADDRESS = "STREET_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"

THRESHOLDS: dict[str, float] = {
    PERSON: 0.5,
    STREET_ADDRESS: 0.5,
    PHONE_NUMBER: 0.5,  # libphonenumber alone (0.4) finds phones in any digit run
    "EMAIL_ADDRESS": 0.5,
    "CREDIT_CARD": 0.5,
    "US_SSN": 0.5,
    "IBAN_CODE": 0.5,
    "IP_ADDRESS": 0.5,
    "US_DRIVER_LICENSE": 0.4,  # its bare patterns score 0.01-0.3; only context lifts them
}
"""Entity types we redact and the minimum score for each. Anything else
(LOCATION, ORGANIZATION, DATE_TIME, NRP, URL) is deliberately left in place."""

# Validated, tightly shaped identifiers win an overlap over fuzzier ones.
_PRIORITY = {
    "EMAIL_ADDRESS": 4, "CREDIT_CARD": 4, "IBAN_CODE": 4, "US_SSN": 4, "IP_ADDRESS": 4,
    STREET_ADDRESS: 3, PHONE_NUMBER: 2, "US_DRIVER_LICENSE": 2, PERSON: 1,
}
_NUMERIC_TYPES = {"CREDIT_CARD", PHONE_NUMBER, "US_SSN", "IBAN_CODE", "US_DRIVER_LICENSE"}

_ESCAPE = re.compile(r"\\(?=[\"'])")
"""Backslashes that escape quotes in exported text (JSON, CSV dumps): ``Mary\\'s`` would hide a name
from the tokenizer. Recognisers read a view with each one as a space; offsets stay the same."""

TOKEN_RE = re.compile(r"<[A-Z][A-Z_]*_[0-9a-f]{8}>")
"""A pseudonym this module wrote; never analysed again (keeps redaction idempotent)."""


# --------------------------------------------------------------------------- pseudonyms


def _normalise(entity_type: str, value: str) -> str:
    """Case, width and spacing variants of one value must give one token."""
    text = unicodedata.normalize("NFKC", value).casefold()
    if entity_type in _NUMERIC_TYPES:
        return re.sub(r"[^0-9a-z]", "", text)
    text = re.sub(r"[’`]", "'", text)
    text = " ".join(text.replace(",", " , ").split()).replace(" , ", ", ")
    return text.strip(" ,.;:'\"-")


def pseudonym(entity_type: str, value: str, secret: bytes) -> str:
    """``<TYPE_xxxxxxxx>``: keyed HMAC-SHA256 of the normalised value; 32 bits keep collisions rare."""
    digest = hmac.new(secret, _normalise(entity_type, value).encode(), hashlib.sha256)
    return f"<{entity_type}_{digest.hexdigest()[:8]}>"


@dataclass(frozen=True)
class Redaction:
    text: str
    """The redacted text."""
    counts: dict[str, int]
    """Replacements per entity type; never the values."""
    spans: tuple[tuple[int, int, str], ...] = ()
    """(start, end, entity type) of each replaced span in the *original* text."""
    entities: tuple[tuple[str, str], ...] = ()
    """(surface, spaCy label) of each named entity left intact, as it reads in the redacted text.

    The entity graph reads these instead of running the recogniser a second time."""


# --------------------------------------------------------------------------- shared regex parts

_WORD = r"[\p{L}\p{M}][\p{L}\p{M}'’\-]*\.?"
_CAP = r"\p{Lu}[\p{L}\p{M}'’\-]*[\p{L}\p{M}]"  # capitalised word, 2+ letters
_HOUSE = r"\d{1,5}[A-Za-z]?(?:[ /-]\d{1,5}[A-Za-z]?)?"
_DIGIT = re.compile(r"\d")
_POSTAL = (
    r"(?:\d{4,6}(?:-\d{3,4})?|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d)"
)
_UNIT = r"(?i:apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|bldg|building|box|#)\.?"
_STOP = frozenset(STOP_WORDS) | {"st"}  # "st" only as a street type, never a name word
_CONNECTORS = frozenset(
    "and of de da del della di do dos das du des la le les von van der den am an upon on y i".split()
)
_NAME_STOP = frozenset(
    """the a an and or but i my your his her our their this that it we you he she they
    please yes no well hi hello hey dear thanks thank sorry ok okay so now also however
    sir madam mr mrs ms dr mister miss today tomorrow yesterday everyone anyone someone
    guys folks team all here there what when where why how who""".split()
)


_GROUPS = frozenset("team everyone all guys folks".split())


def _case_mode(text: str) -> bool:
    """True when capitals carry information (mixed case); False for all-lower/all-upper."""
    return any(c.isupper() for c in text) and any(c.islower() for c in text)


def _is_cap(word: str) -> bool:
    return bool(word) and word[0].isupper()


# --------------------------------------------------------------------------- street addresses

_EN_TYPES = (
    r"street|st|road|rd|avenue|ave|av|boulevard|blvd|drive|dr|lane|ln|way|court|ct|place|pl|"
    r"square|sq|terrace|ter|parkway|pkwy|highway|hwy|crescent|cres|close|grove|row|mews|"
    r"circle|cir|trail|trl|alley|gardens|gdns|hill|park|path|pike|plaza|quay|wharf|green|"
    r"esplanade|embankment|broadway|walk"
)
_PREFIX_TYPES = (
    r"rue|avenue|av|boulevard|bd|chemin|allée|impasse|quai|route|via|viale|vicolo|piazza|"
    r"corso|largo|calle|avenida|avda|paseo|plaza|camino|carrera|rua|travessa|praça|ulica|ul|"
    r"aleja|al|πλατεία|οδός|λεωφόρος|cours|carrer|passeig|plaça|rambla|c/|kalea|pasaje|travesía"
)
# Street-type endings of continental names, glued ("Nassaustraat") or separate ("Weblinger Gürtel").
_SUFFIX_TYPES = (
    r"straat|strasse|straße|str|gasse|weg|laan|plein|gracht|kade|dijk|singel|allee|platz|"
    r"gürtel|damm|ufer|steig|pfad|markt|vej|gade|gatan|gata|gate|vägen|väg|gränd|torget|"
    r"veien|vegen|katu|tie|polku|kuja|utca|útja|út|tér|körút|rakpart|rkp|ulice|náměstí|"
    r"nám|třída|cesta|trg|ulitsa|iela|gatvė|tänav|tee|maantee|puiestee|u(?=\.)"
)
_DIR = r"(?i:n|s|e|w|ne|nw|se|sw|north|south|east|west)\.?"

_PARTICLE = r"(?i:de|la|le|du|des|del|della|di|da|do|dos|das|von|van|der|den)"  # never ends a street name
_STREET_PATTERNS = [
    # 123 Main St / 4500 N. Oak Avenue / 27 2279 President St
    re.compile(
        rf"(?<![\w.,/-])(?P<num>{_HOUSE})\s+(?:{_DIR}\s+)?(?P<name>(?:{_WORD}[ \t]+){{0,3}}?{_WORD})"
        rf"[ \t]+(?P<type>(?i:{_EN_TYPES}))\b\.?"
    ),
    # 48 rue Descartes / Πλατεία Μαβίλη 170 / Calle Mayor 5
    re.compile(
        rf"(?<![\w.,/-])(?:(?P<num>{_HOUSE}),?[ \t]+)?(?P<type>(?i:{_PREFIX_TYPES}))\.?[ \t]+"
        rf"(?P<name>(?:{_WORD}[ \t]+){{0,3}}?(?!{_PARTICLE}[ \t]){_WORD})(?:,?[ \t]+(?P<num2>\d{{1,5}}[a-z]?)\b)?"
    ),
    # Nassaustraat 123 / árpád fejedelem útja 45. / 75 Auerstrasse 12
    re.compile(
        rf"(?<![\w.,/-])(?:(?P<num>{_HOUSE})[ \t]+)?(?P<name>(?:{_WORD}[ \t]+){{0,3}}?"
        rf"[\p{{L}}\p{{M}}'’\-]*(?P<type>(?i:{_SUFFIX_TYPES}))\.?)[ \t]+(?P<num2>\d{{1,5}}[a-z]?)\.?(?![\w-])"
    ),
]
# No street type at all ("87 Jakobi 69", "11 Školní 939"): only with an address cue.
_BARE_STREET = re.compile(
    rf"(?<![\w.,/-])(?P<num>{_HOUSE})[ \t]+(?P<name>(?:{_WORD}[ \t]+){{0,2}}{_WORD})"
    rf"(?:[ \t]+(?P<num2>\d{{1,5}}[a-z]?\.?)(?![\w-])|(?=[ \t]*(?:\n|$)))"
)
_ADDRESS_CUE = re.compile(
    r"(?i:\baddress(?:es)?\b|\blive[sd]?\b|\bliving\b|\breside[sd]?\b|\blocated\b|\bis at\b|"
    r"\bare at\b|\breturn(?:ed)? (?:it )?to\b|\bship(?:ped)? (?:it )?to\b|\bdeliver(?:ed|y)? (?:it )?to\b|"
    r"\bsend (?:it |them )?to\b|\bmov(?:e|ed|ing) to\b|\bbilling\b|\bshipping\b|\bmailing\b|"
    r"\bpostal\b|\bcorner of\b)"
)
# US military and post-office-box addresses (USPS Publication 28): no street at all.
_BOX_ADDRESSES = re.compile(
    r"(?i:(?<![\w-])(?:(?:psc|unit|cmr)[ \t]+\d{1,5},?[ \t]+box[ \t]+\d{1,5}"
    r"|(?:uss|usns|usnv|uscgc)[ \t]+[\p{L}][\p{L}'’\-]*(?:[ \t]+[\p{L}][\p{L}'’\-]*)?)"
    r"(?:,?[ \t]*\n?[ \t]*(?:apo|fpo|dpo)[ \t]+(?:aa|ae|ap)[ \t]+\d{5}(?:-\d{4})?)"
    r"|(?<![\w-])(?:\d{1,5}[ \t]+)?p\.?[ \t]?o\.?[ \t]+box[ \t]+\d{1,6}\b)"
)
_POSTAL_CUE = re.compile(
    rf"(?i:\b(?:zip(?:\s*code)?|post\s*code|postal\s*code|plz)\b(?:\s+is)?)\s*[:#]?\s*(?P<code>{_POSTAL})\b"
)
_TOKEN = re.compile(  # UK / Canadian postcodes first: "SW1A 2AA" is one token
    r"[A-Z]{1,2}\d[A-Z\d]?[ ]\d[A-Z]{2}(?!\w)|[A-Z]\d[A-Z][ ]?\d[A-Z]\d(?!\w)|"
    r"\n|[^\S\n]+|[\p{L}\p{M}][\p{L}\p{M}\p{S}\p{Cf}'’\-]*\.?|\d+(?:-\d+)?\.?|.",
    re.S,
)
_UNIT_BEFORE = re.compile(rf"(?<![\w-]){_UNIT}[ \t]*#?[\w-]{{1,6}},?[ \t]+$")
_TOWN_AFTER = re.compile(r",[ \t]*\p{Lu}")
_LABEL_LINE = re.compile(r"[^\w\n]*\w+(?:[ ]\w+)?[ ]*:")
_ORG_WORDS = frozenset(
    """inc ltd llc llp plc gmbh ag sa bv co corp corporation company group bank university
    consulting software services solutions technologies systems partners associates
    foundation institute agency studio labs""".split()
)


def _has_cue(text: str, start: int) -> bool:
    """An address cue in the ~60 characters before, within the same sentence."""
    window = text[max(0, start - 60) : start]
    window = re.split(r"[.!?](?:\s|$)", window)[-1]
    return bool(_ADDRESS_CUE.search(window))


def _line_at(text: str, pos: int) -> str:
    """The whole line holding ``pos`` (without copying the rest of the text)."""
    end = text.find("\n", pos)
    return text[text.rfind("\n", 0, pos) + 1 : end if end >= 0 else len(text)]


def _at_block_start(text: str, start: int) -> bool:
    """The match opens a line (or follows a 'label:'), as in a postal block."""
    before = text[text.rfind("\n", 0, start) + 1 : start]
    return not before.strip(" \t?*•-") or before.rstrip().endswith(":")


def _name_ok(name: str, cased: bool, *, after_type: bool = False, loose: bool = False) -> bool:
    """Street-name words: no stop words, no digits; capitalised when case is informative.

    After a street type the name may open with a particle ("Rue de la Sarthe"); in a postal
    block (``loose``) only its first word need be capitalised ("Luite tee", "Boriñaur enparantza").
    """
    words = [w.strip(".'’") for w in name.split()]
    if not words or any(w.lower() in _STOP and w.lower() not in _CONNECTORS for w in words):
        return False
    if any(c.isdigit() for w in words for c in w):
        return False
    if cased:
        named = [w for w in words if w.lower() not in _CONNECTORS] if after_type else words
        if not named or not _is_cap(named[0]):
            return False
        return loose or all(_is_cap(w) or w.lower() in _CONNECTORS for w in words)
    return words[0].lower() not in _CONNECTORS


def _continuation(text: str, end: int, cased: bool) -> int:
    """Extend an address over unit, city, region, country and postcode parts.

    Follows the same line after a comma or space while the words look like
    place names, then the following short lines of a postal block, stopping at
    sentence punctuation, a 'Label:' line, a phone number or prose.
    """
    window = _TOKEN.finditer(text, end, min(len(text), end + 300))  # an address is short
    toks = [(m.start(), m.end(), m.group()) for m in window]
    words = [i for i, t in enumerate(toks) if not t[2].isspace() and t[2] != ","]
    last, in_block, line_start, depth = end, False, False, 0
    for k, i in enumerate(words):
        s, e, t = toks[i]
        between = text[last:s]
        if "\n" in between:
            if between.count("\n") > 2:
                break
            line = _line_at(text, s)
            if _LABEL_LINE.match(line) or phone_at(line):
                break
            in_block = line_start = True
        if line_start and re.fullmatch(r"[^\w\s]", t) and t not in "()":
            continue  # bullets or junk that open a line ("??? Apt. 018")
        nxt = toks[words[k + 1]][2] if k + 1 < len(words) else ""
        word = t.rstrip(".")
        lower = word.lower()
        short_line = in_block and len(_line_at(text, s).split()) <= 3
        if re.fullmatch(_UNIT, t):
            ok = bool(re.fullmatch(r"#?[\w-]+\.?", nxt))
        elif re.fullmatch(r"\d{1,6}(?:-\d{3,4})?\.?", t) or re.fullmatch(_POSTAL, word):
            ok = not phone_at(text[s : s + 40])  # "12 Main St, 555 123 4567" ends before the phone
        elif t == "(":
            ok, depth = _is_cap(nxt) or not cased, depth + 1
        elif t == ")":
            ok, depth = depth > 0, depth - 1
        elif re.fullmatch(r"[\p{L}\p{M}][\p{L}\p{M}\p{S}\p{Cf}'’\-]*", word):
            if lower in _CONNECTORS:
                ok = cased and _is_cap(nxt)
            elif lower in _STOP:
                ok = False
            elif cased:
                ok = _is_cap(word) or short_line or bool(re.fullmatch(_POSTAL, nxt.rstrip(".")))
            else:
                ok = in_block or text[last:s].strip() == ","
        else:
            ok = False
        if not ok:
            break
        last = e - 1 if t.endswith(".") and not re.fullmatch(_UNIT, t) else e
        if t.endswith(".") and not re.fullmatch(_UNIT, t) and not re.fullmatch(_UNIT, nxt):
            break  # "... 80815. It serves" ends the address
        line_start = False
    return last


def _without_type(m: re.Match, pattern: re.Pattern) -> str:
    """The street name to vet; a separate continental type word ("rkp.", "utca")
    is vetted by the pattern itself and need not be capitalised."""
    name = m.group("name")
    words = name.split()
    if pattern is _STREET_PATTERNS[2] and len(words) > 1:
        if words[-1].rstrip(".").lower() == m.group("type").lower():
            return " ".join(words[:-1])
    return name


def _name_line_above(text: str, start: int, cased: bool) -> tuple[int, int] | None:
    """The addressee: the line just above a postal block (skipping one company line)."""
    head = max(0, start - 300)
    lines_before = text[head:start].split("\n")
    if lines_before[-1].strip(" \t?*•-"):
        return None  # the address does not open its line
    pos = start - len(lines_before[-1])
    for line in reversed(lines_before[:-1][-3:]):
        pos -= len(line) + 1
        core = line.split(":")[-1].strip(" \t?*•-")
        words = core.split()
        if not words:
            continue
        if words[-1].lower().strip(".,") in _ORG_WORDS:
            continue
        if 2 <= len(words) <= 4 and _name_ok(core, cased) and all(w.isalpha() for w in words):
            offset = pos + 1 + line.rindex(core)
            return offset, offset + len(core)
        return None
    return None


class StreetAddressRecognizer(LocalRecognizer):
    """Street addresses with their unit, city, region, country and postcode,
    and the addressee named on the line above a postal block.

    Stock Presidio has no address recognizer, and spaCy's small model reads
    street names as people or organisations, so the whole address leaks.
    """

    def __init__(self) -> None:
        super().__init__(supported_entities=[STREET_ADDRESS, PERSON], name="StreetAddressRecognizer")

    def load(self) -> None:  # noqa: D102 - nothing to load
        pass

    def _streets(self, text: str, cased: bool) -> list[tuple[int, int, float]]:
        """Per pattern and end: the longest match that starts with a house number,
        else the shortest (so "Yesterday Nassaustraat 5" keeps "Yesterday")."""
        found: list[tuple[int, int, float]] = []
        if not _DIGIT.search(text):  # every match kept below has a house number; most prose has none
            return found
        for pattern in [*_STREET_PATTERNS, _BARE_STREET]:
            by_end: dict[int, list] = {}
            for m in pattern.finditer(text, overlapped=True):
                if pattern is not _BARE_STREET and m.group("type").lower() == "st" and cased:
                    if not m.group("type")[0].isupper():
                        continue
                if not (m.group("num") or m.groupdict().get("num2")):
                    continue
                cue = _has_cue(text, m.start())
                block = _at_block_start(text, m.start())
                in_block = block and "\n" in text[m.end() : m.end() + 3]
                bare = pattern is _BARE_STREET
                name_ok = _name_ok(_without_type(m, pattern), cased, after_type=pattern is _STREET_PATTERNS[1],
                                   loose=bare and in_block)
                if not name_ok:
                    continue
                if bare:
                    # "59 Metsanurga 48, Vadsa": house number, street, number, then a town
                    framed = bool(m.group("num2")) and bool(_TOWN_AFTER.match(text, m.end()))
                    score = 0.6 if cue or in_block or framed else 0.0
                elif cased:
                    # "The 2 Main Drive shafts": prose goes on, so only trust it with a cue
                    prose = re.match(r"[ \t]+([a-z]+)", text[m.end() : m.end() + 30])
                    loose = prose and prose.group(1) not in _STOP
                    score = 0.6 if cue or block else (0.3 if loose else 0.7)
                else:
                    score = 0.6 if cue or block else 0.3
                by_end.setdefault(m.end(), []).append((m.start(), bool(m.group("num")), score))
            for end, cands in by_end.items():
                numbered = [c for c in cands if c[1]]
                start, _, score = min(numbered or cands, key=lambda c: c[0] if numbered else -c[0])
                found.append((start, end, score))
        return found

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        cased = _case_mode(text)
        results = []
        for start, end, score in self._streets(text, cased):
            if score <= 0:
                continue
            end = _continuation(text, end, cased)
            unit = _UNIT_BEFORE.search(text, max(0, start - 24), start)
            start = unit.start() if unit else start  # "Apt. 434 40 Rue de la Sarthe": the unit first
            results.append(_result(STREET_ADDRESS, start, end, score, "street address"))
            name = _name_line_above(text, start, cased) if score >= 0.5 else None
            if name:
                results.append(_result(PERSON, *name, 0.6, "addressee line"))
        for m in _BOX_ADDRESSES.finditer(text):
            end = _continuation(text, m.end(), cased)
            results.append(_result(STREET_ADDRESS, m.start(), end, 0.6, "box address"))
        for m in _POSTAL_CUE.finditer(text):
            results.append(_result(STREET_ADDRESS, m.start("code"), m.end("code"), 0.6, "postcode"))
        return results


# --------------------------------------------------------------------------- names from context

_NAME = rf"{_CAP}(?:[ ]{{1,2}}{_CAP}){{0,3}}"
_LOWER_NAME = r"[\p{L}\p{M}][\p{L}\p{M}'’\-]+(?:[ ][\p{L}\p{M}][\p{L}\p{M}'’\-]+)?"
_KIN = (
    r"kid|son|daughter|child|wife|husband|partner|spouse|mother|mom|mum|father|dad|brother|"
    r"sister|friend|boss|colleague|manager|grandmother|grandma|grandfather|grandpa|aunt|uncle|"
    r"cousin|nephew|niece|fianc[ée]e?|girlfriend|boyfriend|neighbou?r|tenant|landlord|client|"
    r"patient|grandson|granddaughter|stepson|stepdaughter|baby|roommate|flatmate"
)
_PERSONAL_NOUN = _KIN + r"|address|phone|email|e-mail|home|birthday|name|ssn|passport"
_POSSESSIVE = r"his|her|their|my|our|your"


@dataclass(frozen=True)
class _Cue:
    """Words around a name: ``before`` + NAME + ``after``. A strong cue overrides
    spaCy calling the span an organisation or a place; ``plain`` cues are safe
    in text without capitals, where any word could be the name."""

    before: str
    after: str = ""
    score: float = 0.7
    strong: bool = True
    plain: bool = False


_CUES = [
    _Cue(r"(?i:\b(?:mr|mrs|ms|miss|mx|dr|prof|sir|madam|dame|lady|lord|rev|fr)\b\.?)[ ]+", score=0.8),
    _Cue(r"(?i:\b(?:mr|mrs|ms|mx|dr|prof)\b\.?)[ ]+", score=0.8, plain=True),
    _Cue(
        r"(?i:(?:\b(?:my|his|her|their|your|our)|'s)[ ]+(?:(?:full|first|last|middle|maiden|"
        r"given|family|real|legal|sur)[ ]*)?name(?:[ ]+(?:is|was)|[ ]*[:?])?)[ ]+",
        score=0.85, plain=True,
    ),
    _Cue(r"(?i:\bname[ ]*[:?])[ ]*", score=0.8, plain=True),
    _Cue(r"(?i:\b(?:calls?|called)[ ]+me|\bnamed(?:[ ]+(?:him|her|them))?|\bknown[ ]+as|\bmy[ ]+name's)[ ]+",
         plain=True),
    _Cue(rf"(?i:\bmy[ ]+(?:{_KIN}),?)[ ]+"),
    # "had given Tyler his address": the recipient of give/send/tell ...
    _Cue(
        r"(?i:\b(?:gave|given|give|gives|sent|send|sends|told|tell|tells|showed|show|handed|"
        r"lent|owe|owes|owed|offered|emailed|texted|thanked|asked)[ ]+)",
        rf"(?=[ ]+(?i:{_POSSESSIVE})\b)", score=0.6, plain=True,
    ),
    _Cue(  # "said Keiko to Jessica": the one spoken to
        rf"(?i:\b(?:said|says|asked|replied|whispered|shouted|yelled|cried|wrote))[ ]+{_NAME}[ ]+(?i:to)[ ]+",
        score=0.6,
    ),
    _Cue(r",[ ]+", r"(?=[ ]*[!?])", score=0.6, strong=False),  # "Don't go to town, Charlotte!"
    _Cue(r"(?i:\b(?:hi|hello|hey|dear),?)[ ]+", score=0.6, strong=False),
    _Cue(
        r"(?i:\b(?:said|says|asked|asks|replied|replies|told|tells|shouted|yelled|whispered|"
        r"cried|wrote|added|explained)(?:[ ]+(?:to|at))?)[ ]+",
        score=0.6, strong=False,
    ),
    _Cue(
        r"(?i:\b(?:directed|written|composed|performed|sung|narrated|illustrated|painted|"
        r"photographed|signed|approved|reviewed|submitted|prepared|authored)[ ]+by|\bstarring|"
        r"\bfeaturing|\bft\.)[ ]+",
        score=0.6,
    ),
    _Cue("", rf"(?=['’]s[ ]+(?i:{_KIN})\b)"),
    _Cue("", rf"(?=['’]s[ ]+(?i:{_PERSONAL_NOUN})\b)", strong=False),  # "Amazon's address"
    _Cue(
        "",
        r"(?=[ ]+(?i:lives|lived|resides|resided|was[ ]+born|grew[ ]+up|is[ ]+a[ ]+\d+[ -]year|"
        r"passed[ ]+away|got[ ]+married|works[ ]+as)\b)",
    ),
    _Cue(
        "", r"(?=[ ]+(?i:said|says|asked|replied|shouted|yelled|whispered|told|wrote)\b)",
        score=0.6, strong=False,
    ),
]
_VOCATIVE = re.compile(  # "Marisca, can I please speak to your boss?" - called out first
    rf"(?P<name>{_NAME})(?=,[ ]*(?i:can|could|would|will|please|do|did|are|have|thanks|thank)\b)"
)
_LEFT_EDGE = r"(?<![\p{L}\p{M}'’\-])"
_CASED_CUES = [(re.compile(c.before + _LEFT_EDGE + f"(?P<name>{_NAME})" + c.after), c) for c in _CUES]
_PLAIN_CUES = [
    (re.compile(c.before + _LEFT_EDGE + f"(?P<name>{_LOWER_NAME})" + c.after), c)
    for c in _CUES
    if c.plain
]
_NOT_PERSON_LABELS = {"ORG", "GPE", "LOC", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART", "NORP"}


def _trim_name(name: str) -> str:
    """Cut a captured name at the first word that cannot be part of it;
    "Dear Support Team" names a group, not a person."""
    kept = []
    for word in name.split(" "):
        if word.lower().strip("'’") in _NAME_STOP:
            return "" if word.lower() in _GROUPS else " ".join(kept)
        kept.append(word)
    return " ".join(kept)


def _sentence_start(text: str, pos: int) -> int:
    """Where the sentence holding ``pos`` starts, after any quotes or bullets."""
    head = max(0, pos - 300)
    ends = [head + m.end() for m in re.finditer(r"\n|[.!?]+[ \t]+", text[head:pos])]
    cut = ends[-1] if ends else head
    return cut + len(text[cut:pos]) - len(text[cut:pos].lstrip(" \t\"'(*-?"))


class ContextPersonRecognizer(LocalRecognizer):
    """Names that the small spaCy model misses or calls an ORG, found by the
    words around them ("my name is", "Mrs.", "my kid", "Arne's address",
    "X lives at"). Weak cues (speech verbs, greetings) defer to spaCy when it
    says the span is an organisation or a place."""

    def __init__(self) -> None:
        super().__init__(supported_entities=[PERSON], name="ContextPersonRecognizer")

    def load(self) -> None:  # noqa: D102 - nothing to load
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        doc = nlp_artifacts.tokens if nlp_artifacts is not None else None
        other = [(e.start_char, e.end_char) for e in (doc.ents if doc is not None else [])
                 if e.label_ in _NOT_PERSON_LABELS]
        cased = _case_mode(text)
        found = [(m, cue) for pattern, cue in (_CASED_CUES if cased else _PLAIN_CUES)
                 for m in pattern.finditer(text, overlapped=True)]
        plural = set()
        if found and not cased:  # tagging only here: most texts never need it
            plural = {t.idx for t in _tagger()(text) if t.tag_ in {"NNS", "NNPS"}}
        if cased:
            called = _Cue("", score=0.6)  # "Lucas, can I ...": called out, whatever the recogniser says
            found += [(m, called) for m in _VOCATIVE.finditer(text)
                      if m.start() == _sentence_start(text, m.start())]
        results = []
        for m, cue in found:
            name = _trim_name(m.group("name"))
            start, end = m.start("name"), m.start("name") + len(name)
            if not name or any(c.isdigit() for c in name) or (not cased and start in plural):
                continue  # a plural noun ("give customers their ...") is nobody's name
            if not cue.strong and any(s < end and start < e for s, e in other):
                continue
            results.append(_result(PERSON, start, end, cue.score, "name by context"))
        return results


# --------------------------------------------------------------------------- engine


def _result(entity: str, start: int, end: int, score: float, why: str) -> RecognizerResult:
    return RecognizerResult(entity, start, end, score, analysis_explanation=None,
                            recognition_metadata={"recognizer_name": why})


def nlp_engine_config(language: str = "en", model_name: str = runtime.SPACY_MODEL) -> dict:
    """Pins the installed spaCy model; Presidio otherwise downloads en_core_web_lg."""
    return {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": language, "model_name": model_name}],
        # spaCy labels that are never personal identifiers: ignored instead of logged per text.
        "ner_model_configuration": {
            "labels_to_ignore": ["CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT", "TIME", "LANGUAGE",
                                 "LAW", "WORK_OF_ART", "PRODUCT", "EVENT", "FAC"],
        },
    }


def _build_analyzer(language: str) -> AnalyzerEngine:
    config = nlp_engine_config(language)
    nlp_engine = _NerOnlyEngine(
        models=config["models"], ner_model_configuration=NerModelConfiguration.from_dict(config["ner_model_configuration"])
    )
    nlp_engine.load()
    registry = RecognizerRegistry(supported_languages=[language])
    for recognizer in (
        SpacyRecognizer(supported_language=language, supported_entities=[PERSON]),
        EmailRecognizer(supported_language=language),
        PhoneRecognizer(supported_language=language),
        CreditCardRecognizer(supported_language=language),
        UsSsnRecognizer(supported_language=language),
        CaseBlindIbanRecognizer(supported_language=language),
        IpRecognizer(supported_language=language),
        UsLicenseRecognizer(supported_language=language),
        StreetAddressRecognizer(),
        LoosePhoneRecognizer(),
        ContextPersonRecognizer(),
        ProperNounRecognizer(),
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


class CaseBlindIbanRecognizer(IbanRecognizer):
    """IBANs written in lower case ("gb82west1234..."): Presidio's patterns want capitals; the
    checksum it validates is the same either way."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        upper = text.upper()
        return super().analyze(upper if len(upper) == len(text) else text, entities, nlp_artifacts, regex_flags)


class _NerOnlyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine over the entity recogniser alone (it has its own tok2vec).

    The shared tok2vec, tagger, parser, attribute ruler and lemmatizer cost more
    than the recogniser and serve only Presidio's context lemmas; lower-case
    forms stand in for those. Same leaks and redactions on the labelled PII
    sentences; the redact stage costs about a third less (~33 -> ~21 ms per CISI abstract).
    """

    def load(self) -> None:
        self.nlp = {m["lang_code"]: load_tagged(m["model_name"]) for m in self.models}

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        columns = doc.to_array([LOWER, IDX])  # one C-level pass instead of a Token object per word
        entities, scores = self._get_updated_entities(self._get_entities(doc), self._get_scores_for_entities(doc))
        return NlpArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=columns[:, 1].tolist(),
            lemmas=[doc.vocab.strings[int(h)] for h in columns[:, 0]],
            nlp_engine=self,
            language=language,
            scores=scores,
        )


@functools.cache
def _tagger() -> Language:
    """Part-of-speech tags for the rare lower-case text with a name cue (plural nouns are nobody)."""
    return spacy.load(runtime.SPACY_MODEL, exclude=["parser", "ner", "lemmatizer", "attribute_ruler"])


_PERSON_HEADERS = re.compile(
    r"(?i:name|person|people|customer|client|contact|author|owner|employee|staff|user|member|patient|"
    r"manager|assignee|reporter|signed|signatory|sender|recipient|attendee|participant|student|player|"
    r"who|by|from|to|cc)"
)


def _table_header(text: str, pos: int) -> str | None:
    """The column header above ``pos`` when the text is a flattened table ("a | b\nc | d"), else None."""
    lines = text.split("\n")
    if sum(" | " in line for line in lines) < 2:
        return None
    line_start = text.rfind("\n", 0, pos) + 1
    if line_start == 0:
        return ""  # the header row itself: labels, not people
    column = text[line_start:pos].count(" | ")
    headers = lines[0].split(" | ")
    return headers[column] if column < len(headers) else ""


def _may_be_person(text: str, r: RecognizerResult, doc: Doc) -> bool:
    """A plural common noun is nobody ("Stanley Cups", "Settings"), and in a table only a column
    headed by a person word ("Customer", "Name") holds people ("Team": Blues, Flyers)."""
    strong = (r.recognition_metadata or {}).get("recognizer_name") == "name by context"
    span = doc.char_span(r.start, r.end, alignment_mode="expand")
    if span is not None and len(span) and plural_noun(span[-1]) and not strong:
        return False
    header = _table_header(text, r.start)
    return header is None or bool(_PERSON_HEADERS.search(header))


def _clean_person(text: str, r: RecognizerResult) -> list[tuple[int, int]]:
    """spaCy PERSON spans run across lines, swallow "'s" and catch URLs; keep the name parts."""
    cased = _case_mode(text)
    pieces = []
    offset = r.start
    for part in text[r.start : r.end].split("\n"):
        lead = len(part) - len(part.lstrip(" \t?*•-\"'("))
        core = re.sub(r"(?:['’]s?|[\s,.;:\"')])+$", "", part.strip(" \t?*•-\"'("))
        words = core.split()
        label_end = offset + lead + len(core)
        while len(words) > 1 and common(words[-1]) and text[label_end:].lstrip(" \t").startswith(":"):
            words.pop()  # "Margaret Holloway Phone: ...": a form's next label ends the name
            core = core[: core.rindex(words[-1]) + len(words[-1])]
            label_end = offset + lead + len(core)
        while len(words) > 1 and re.fullmatch(_UNIT, words[-1]):
            words.pop()  # "Diana Weöres Apt. 434 ...": the unit opens the address
            core = core[: core.rindex(words[-1]) + len(words[-1])]
        if len(words) == 1 and common(words[0]) and text[label_end:].lstrip(" \t").startswith(":"):
            words = []  # "Address:" opens a field
        if (
            words
            and len(core) >= 2
            and not re.search(r"[\d/@:_<>]", core)
            and (not cased or any(_is_cap(w) for w in words))
            and words[-1].lower().strip(".,") not in _ORG_WORDS  # "Blue Fjord Ltd"
            and not TOKEN_RE.search(core)
            and any(w.lower() not in _STOP for w in words)
        ):
            pieces.append((offset + lead, offset + lead + len(core)))
        offset += len(part) + 1
    return pieces


def _glued(text: str, start: int, end: int) -> bool:
    """Digits that continue an identifier ("INV-2023-000123") are not a phone number."""
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return before.isalnum() or before in "-/_" or after.isalpha()


def _spread_names(text: str, spans: list[tuple[int, int, str, float]]) -> list[tuple[int, int, str, float]]:
    """A name found once is redacted everywhere in the document, surname alone too."""
    names: set[str] = set()
    for start, end, entity, _ in spans:
        if entity == PERSON:
            value = text[start:end]
            names.add(value)
            words = value.split()
            if len(words) > 1:
                names.update(w for w in words if len(w) > 2 and _is_cap(w) and w.lower() not in _STOP)
    extra = []
    for name in names:
        for m in re.finditer(rf"(?<![\p{{L}}\p{{M}}\d_<])({re.escape(name)})(?![\p{{L}}\p{{M}}\d_])", text):
            extra.append((m.start(), m.end(), PERSON, 0.6))
    return spans + extra


def _inside_token(start: int, end: int, tokens: list[tuple[int, int]]) -> bool:
    """The span touches a pseudonym written by an earlier pass."""
    i = bisect.bisect_right(tokens, (start, 1 << 62))
    return (i > 0 and tokens[i - 1][1] > start) or (i < len(tokens) and tokens[i][0] < end)


def _resolve(spans: Iterable[tuple[int, int, str, float]]) -> list[tuple[int, int, str]]:
    """Non-overlapping spans: merge same-type overlaps, then keep the
    higher-priority, longer, higher-scoring one of any clash."""
    merged: list[list] = []
    for start, end, entity, score in sorted(spans, key=lambda s: (s[2], s[0], -s[1])):
        if merged and merged[-1][2] == entity and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][3] = max(merged[-1][3], score)
        else:
            merged.append([start, end, entity, score])
    chosen: list[tuple[int, int, str]] = []  # kept sorted and disjoint
    ranked = sorted(merged, key=lambda s: (-_PRIORITY.get(s[2], 0), -(s[1] - s[0]), -s[3]))
    for start, end, entity, _ in ranked:
        i = bisect.bisect_left(chosen, (start,))
        if (i == 0 or chosen[i - 1][1] <= start) and (i == len(chosen) or chosen[i][0] >= end):
            chosen.insert(i, (start, end, entity))
    return chosen


class Redactor:
    """Finds personal identifiers and replaces them with keyed pseudonyms.

    Loading spaCy and Presidio takes a second or two: build one per process.
    """

    def __init__(self, secret: bytes, *, language: str = "en") -> None:
        if not secret:
            raise ValueError("a non-empty secret is required: it keys the pseudonyms")
        self._language = language
        self._analyzer = _build_analyzer(language)
        self._anonymizer = AnonymizerEngine()
        self._operators = {
            entity: OperatorConfig(
                "custom", {"lambda": lambda value, _e=entity: pseudonym(_e, value, secret)}
            )
            for entity in THRESHOLDS
        }

    def redact(self, text: str) -> Redaction:
        return self.redact_many([text])[0]

    def redact_many(self, texts: list[str], batch_size: int = 32) -> list[Redaction]:
        """Batched: spaCy runs over all texts in one ``nlp.pipe`` (Presidio's batch engine, keeping the docs)."""
        analyzer = self._analyzer
        out = []
        views = [_ESCAPE.sub(" ", t) for t in texts]  # same length: spans found in a view fit the text
        batch = analyzer.nlp_engine.process_batch(views, self._language, batch_size=batch_size)
        for text, (view, artifacts) in zip(texts, batch):
            results = analyzer.analyze(
                text=view, language=self._language, nlp_artifacts=artifacts,
                entities=list(THRESHOLDS), score_threshold=0.0,
            )
            out.append(self._apply(text, results, artifacts.tokens, view))
        return out

    def _select(self, text: str, results: list[RecognizerResult], doc: Doc) -> list[tuple[int, int, str]]:
        kept = [r for r in results if r.score >= THRESHOLDS.get(r.entity_type, 1.1)]
        kept = [r for r in kept if r.entity_type != PERSON or _may_be_person(text, r, doc)]
        tokens = [(m.start(), m.end()) for m in TOKEN_RE.finditer(text)]  # sorted, disjoint
        spans: list[tuple[int, int, str, float]] = []
        for r in kept:
            if r.entity_type == PERSON:
                spans.extend((s, e, PERSON, r.score) for s, e in _clean_person(text, r))
            else:
                spans.append((r.start, r.end, r.entity_type, r.score))
        spans = [s for s in spans if s[2] != PHONE_NUMBER or not _glued(text, s[0], s[1])]
        spans = _spread_names(text, spans)
        return _resolve(s for s in spans if not _inside_token(s[0], s[1], tokens))

    def _apply(self, text: str, results: list[RecognizerResult], doc: Doc, view: str) -> Redaction:
        spans = self._select(view, results, doc)
        ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        kept = _intact(text, ents, spans)
        if not spans:
            return Redaction(text=text, counts={}, spans=(), entities=kept)
        engine_result = self._anonymizer.anonymize(
            text=text,
            analyzer_results=[RecognizerResult(e, s, t, 1.0) for s, t, e in spans],
            operators=self._operators,
            merge_entities_with_spaces=False,
        )
        counts = Counter(entity for _, _, entity in spans)
        return Redaction(text=engine_result.text, counts=dict(counts), spans=tuple(spans), entities=kept)


def _intact(text: str, ents: list[tuple[int, int, str]], redacted: list[tuple[int, int, str]]) -> tuple[tuple[str, str], ...]:
    """Named entities that no redaction touches: their words appear unchanged in the redacted text.

    A person the recogniser found is kept only when redaction left it alone (the
    small model calls "Globex Corporation" a person); the graph decides what to use.
    """
    return tuple(
        (" ".join(text[start:end].split()), label)
        for start, end, label in ents
        if not any(s < end and start < e for s, e, _ in redacted)
    )
