"""Street addresses with their unit, city, region, country and postcode, and the addressee.

Stock Presidio has no address recogniser, and spaCy's small model reads street
names as people or organisations, so the whole address leaks. These patterns
cover US/UK forms ("123 Main St"), continental ones ("Nassaustraat 123", "48 rue
Descartes"), postal blocks over several lines, US military and PO-box addresses,
and postcodes given with a cue ("zip code is 35649").
"""

from __future__ import annotations

import regex as re
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pipelines.redact_base import ORG_WORDS, PERSON, Recognizer, STOP, STREET_ADDRESS, UNIT, case_mode, is_cap, result
from pipelines.redact_phones import phone_at

_WORD = r"[\p{L}\p{M}][\p{L}\p{M}'’\-]*\.?"
_HOUSE = r"\d{1,5}[A-Za-z]?(?:[ /-]\d{1,5}[A-Za-z]?)?"
_DIGIT = re.compile(r"\d")
_POSTAL = (
    r"(?:\d{4,6}(?:-\d{3,4})?|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d)"
)
_PARTICLES = "de la le du des au aux del della delle dello degli dei dal dalla di da do dos das von van der den".split()
"""Particles of street names ("Rue de la Sarthe", "Via degli Orti"): never the last word of one."""
_CONNECTORS = frozenset(_PARTICLES) | frozenset("and of the les am an upon on y i".split())
_SAINTS = ("St", "Ste", "ST", "STE")  # "St. Kilda Street", "St Jerome": a saint, though "st" is no name word

_EN_TYPES = (
    r"street|st|str|road|rd|avenue|ave|av|boulevard|blvd|drive|dr|lane|ln|way|court|ct|place|pl|"
    r"square|sq|terrace|ter|parkway|pkwy|highway|hwy|crescent|cres|close|grove|row|mews|"
    r"circle|cir|trail|trl|alley|gardens|gdns|hill|park|path|pike|plaza|quay|wharf|green|"
    r"esplanade|embankment|broadway|walk"
)
_PREFIX_TYPES = (
    r"rue|place|avenue|av|boulevard|bd|chemin|allée|impasse|quai|route|via|viale|vicolo|piazza|"
    r"corso|largo|calle|avenida|avda|paseo|plaza|camino|carrera|rua|travessa|praça|ulica|ul|"
    r"aleja|al|πλατεία|οδός|λεωφόρος|cours|carrer|passeig|plaça|rambla|c/|kalea|pasaje|travesía"
)
# Street-type endings of continental names, glued ("Nassaustraat") or separate ("Weblinger Gürtel").
_SUFFIX_TYPES = (
    r"straat|strasse|straße|str|gasse|weg|laan|plein|gracht|kade|dijk|singel|allee|platz|"
    r"gürtel|damm|ufer|steig|pfad|markt|vej|gade|gatan|gata|gate|vägen|väg|gränd|torget|"
    r"veien|vegen|vei|veg|katu|tie|polku|kuja|utca|útja|út|tér|körút|krt|rakpart|rkp|ulice|náměstí|"
    r"nám|třída|cesta|trg|ulica|ulitsa|iela|gatvė|tänav|tee|maantee|puiestee|u(?=\.)"
)
_DIR = r"(?i:n|s|e|w|ne|nw|se|sw|north|south|east|west)\.?"

_PARTICLE = rf"(?i:{'|'.join(_PARTICLES)})"
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
    # Calle Carril de la Fuente 25: as above, the name running on to the house number after it
    re.compile(
        rf"(?<![\w.,/-])(?P<num>)(?P<type>(?i:{_PREFIX_TYPES}))\.?[ \t]+"
        rf"(?P<name>(?:{_WORD}[ \t]+){{0,4}}(?!{_PARTICLE}[ \t]){_WORD}),?[ \t]+(?P<num2>\d{{1,5}}[a-z]?)\b"
    ),
    # Nassaustraat 123 / árpád fejedelem útja 45. / 75 Auerstrasse 12
    re.compile(
        rf"(?<![\w.,/-])(?:(?P<num>{_HOUSE})[ \t]+)?(?P<name>(?:{_WORD}[ \t]+){{0,3}}?"
        rf"[\p{{L}}\p{{M}}'’\-]*(?P<type>(?i:{_SUFFIX_TYPES}))\.?)[ \t]+(?P<num2>\d{{1,5}}[a-z]?)\.?(?![\w-])"
    ),
]
# What every match of the suffix-type pattern holds (its type, then the house number): one scan
# that rules the costly pattern out for most texts
_SUFFIX_TYPED_NUMBER = re.compile(rf"(?i:{_SUFFIX_TYPES})\.?[ \t]+\d")
# A street named and typed but with no house number, or the number before the type ("at the corner of
# Abbott Underpass St.", "lives on Alvaro Cunqueiro 83 street"): only with an address cue.
_NAMED_STREET = re.compile(
    rf"(?<![\w.,/-])(?P<name>(?:{_WORD}[ \t]+){{0,3}}?{_WORD})(?:[ \t]+(?P<num2>\d{{1,5}}[a-z]?))?"
    rf"[ \t]+(?P<type>(?i:{_EN_TYPES}))\b\.?"
)
# No street type at all ("87 Jakobi 69", "11 Školní 939"): only with an address cue.
_BARE_STREET = re.compile(
    rf"(?<![\w.,/-])(?P<num>{_HOUSE})[ \t]+(?P<name>(?:{_WORD}[ \t]+){{0,3}}{_WORD})"
    rf"(?:[ \t]+(?P<num2>\d{{1,5}}[a-z]?\.?)(?![\w-])|(?=[ \t]*(?:\n|$)))"
)
_ADDRESS_CUE = re.compile(
    r"(?i:\baddress(?:es)?\b|\blive[sd]?\b|\bliving\b|\breside[sd]?\b|\blocated\b|\bis at\b|"
    r"\bare at\b|\breturn(?:ed)? (?:it )?to\b|\bship(?:ped)? (?:it )?to\b|\bdeliver(?:ed|y)? (?:it )?to\b|"
    r"\bsen[dt] (?:it |them )?to\b|\bmov(?:e|ed|ing) to\b|\bbilling\b|\bshipping\b|\bmailing\b|"
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
_ELISION = re.compile(r"^[dlDL]['’](?=\p{Lu})")
_UNIT_BEFORE = re.compile(rf"(?<![\w-]){UNIT}[ \t]*#?[\w-]{{1,6}},?[ \t]+$")
_TOWN_AFTER = re.compile(r",[ \t]*\p{Lu}")
_LABEL_LINE = re.compile(r"[^\w\n]*\w+(?:[ ]\w+)?[ ]*:")


def _has_cue(text: str, start: int) -> bool:
    """An address cue in the ~60 characters before, within the same sentence."""
    window = text[max(0, start - 60) : start]
    window = re.split(r"(?<!\b(?i:st|rd|ave|dr|blvd|ln|ct|pl|sq))[.!?](?:\s|$)", window)[-1]
    return bool(_ADDRESS_CUE.search(window))


def _line_at(text: str, pos: int) -> str:
    """The whole line holding ``pos`` (without copying the rest of the text)."""
    end = text.find("\n", pos)
    return text[text.rfind("\n", 0, pos) + 1 : end if end >= 0 else len(text)]


def _at_block_start(text: str, start: int) -> bool:
    """The match opens a line (or follows a 'label:'), as in a postal block."""
    before = text[text.rfind("\n", 0, start) + 1 : start]
    return not before.strip(" \t?*•->|") or before.rstrip().endswith(":")


def _name_ok(name: str, cased: bool, *, after_type: bool = False, loose: bool = False) -> bool:
    """Street-name words: no stop words, no digits; capitalised when case is informative.

    After a street type the name may open with a particle ("Rue de la Sarthe"); in a postal
    block (``loose``) only its first word need be capitalised ("Luite tee", "Boriñaur enparantza").
    """
    # an elided particle ("rue Porte d'Orange") is read as the name it elides; a saint ("St. John
    # Street", "St Marks Place") opens a street name though "st" is no name word elsewhere
    words = [_ELISION.sub("", w.strip(".'’")) for w in name.split()]
    if len(words) > 1 and words[0] in _SAINTS:
        words = words[1:]
    if not words or any(w.lower() in STOP and w.lower() not in _CONNECTORS for w in words):
        return False
    if any(c.isdigit() for w in words for c in w):
        return False
    if cased:
        named = [w for w in words if w.lower() not in _CONNECTORS] if after_type else words
        if not named or not is_cap(named[0]):
            return False
        return loose or all(is_cap(w) or w.lower() in _CONNECTORS for w in words)
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
        between, line = text[last:s], _line_at(text, s)
        if "\n" in between:
            if between.count("\n") > 2:
                break
            if _LABEL_LINE.match(line) or phone_at(line):
                break
            in_block = line_start = True
        if line_start and re.fullmatch(r"[^\w\s]", t) and t not in "()":
            continue  # bullets or junk that open a line ("??? Apt. 018")
        nxt = toks[words[k + 1]][2] if k + 1 < len(words) else ""
        word = t.rstrip(".")
        lower = word.lower()
        short_line = in_block and sum(any(c.isalnum() for c in w) for w in line.split()) <= 3  # bullets aside
        saint = word in _SAINTS and is_cap(nxt)  # "St Jerome", "St. Albans": a town
        if re.fullmatch(UNIT, t):
            ok = bool(re.fullmatch(r"#?[\w-]+\.?", nxt))
        elif re.fullmatch(r"\d{1,6}(?:-\d{3,4})?\.?", t) or re.fullmatch(_POSTAL, word):
            ok = not phone_at(text[s : s + 40])  # "12 Main St, 555 123 4567" ends before the phone
        elif t == "(":
            ok, depth = is_cap(nxt) or not cased, depth + 1
        elif t == ")":
            ok, depth = depth > 0, depth - 1
        elif re.fullmatch(r"[\p{L}\p{M}][\p{L}\p{M}\p{S}\p{Cf}'’\-]*", word):
            if lower in _CONNECTORS and not (cased and word.isupper()):  # "DU 47621": a region code
                ok = cased and (is_cap(nxt) or nxt.lower() in _CONNECTORS)  # "Kingdom of the Netherlands"
            elif lower in STOP:  # a saint, or a word of a town written in capitals ("MO I RANA")
                ok = (saint and (short_line or text[last:s].strip() == ",")) or (short_line and line.isupper())
            elif cased:
                ok = is_cap(_ELISION.sub("", word)) or short_line or bool(re.fullmatch(_POSTAL, nxt.rstrip(".")))
            else:
                ok = in_block or text[last:s].strip() == ","
        else:
            ok = False
        if not ok:
            break
        last = e - 1 if t.endswith(".") and not re.fullmatch(UNIT, t) else e
        if t.endswith(".") and not re.fullmatch(UNIT, t) and not re.fullmatch(UNIT, nxt) and not saint:
            break  # "... 80815. It serves" ends the address
        line_start = False
    return last


def _without_type(m: re.Match, pattern: re.Pattern) -> str:
    """The street name to vet; a separate continental type word ("rkp.", "utca")
    is vetted by the pattern itself and need not be capitalised."""
    name = m.group("name")
    words = name.split()
    if pattern is _STREET_PATTERNS[3] and len(words) > 1:
        if words[-1].rstrip(".").lower() == m.group("type").lower():
            return " ".join(words[:-1])
    return name


def _name_line_above(text: str, start: int, cased: bool) -> tuple[int, int] | None:
    """The addressee: the line just above a postal block (skipping one company line)."""
    head = max(0, start - 300)
    lines_before = text[head:start].split("\n")
    if lines_before[-1].strip(" \t?*•->|"):
        return None  # the address does not open its line
    pos = start - len(lines_before[-1])
    for line in reversed(lines_before[:-1][-3:]):
        pos -= len(line) + 1
        core = line.split(":")[-1].strip(" \t?*•->|")
        words = core.split()
        if not words:
            continue
        if words[-1].lower().strip(".,") in ORG_WORDS:
            continue
        if 2 <= len(words) <= 4 and _name_ok(core, cased) and all(w.isalpha() for w in words):
            offset = pos + line.rindex(core)
            return offset, offset + len(core)
        return None
    return None


class StreetAddressRecognizer(Recognizer):
    """Street addresses with their unit, city, region, country and postcode,
    and the addressee named on the line above a postal block.

    Stock Presidio has no address recognizer, and spaCy's small model reads
    street names as people or organisations, so the whole address leaks.
    """

    ENTITIES = (STREET_ADDRESS, PERSON)

    def _streets(self, text: str, cased: bool) -> list[tuple[int, int, float]]:
        """Per pattern and end: the longest match that starts with a house number,
        else the shortest (so "Yesterday Nassaustraat 5" keeps "Yesterday")."""
        found: list[tuple[int, int, float]] = []
        if not _DIGIT.search(text):  # every match kept below has a house number; most prose has none
            return found
        for pattern in [*_STREET_PATTERNS, _BARE_STREET]:
            if pattern is _STREET_PATTERNS[3] and not _SUFFIX_TYPED_NUMBER.search(text):
                continue
            by_end: dict[int, list] = {}
            for m in pattern.finditer(text, overlapped=True):
                if pattern is not _BARE_STREET and m.group("type").lower() == "st" and cased:
                    if not m.group("type")[0].isupper():
                        continue
                if not (m.group("num") or m.groupdict().get("num2")):
                    continue
                # "Apt. 731 96 törneby 2": a unit before the number says address as a cue does
                cue = _has_cue(text, m.start()) or bool(_UNIT_BEFORE.search(text, max(0, m.start() - 24), m.start()))
                block = _at_block_start(text, m.start())
                in_block = block and "\n" in text[m.end() : m.end() + 3]
                bare = pattern is _BARE_STREET
                name = _without_type(m, pattern)
                typed_apart = name != m.group("name")  # "Árpád fejedelem útja 3": the type word stands alone
                name_ok = _name_ok(name, cased, after_type=pattern in _STREET_PATTERNS[1:3],
                                   loose=(bare and in_block) or typed_apart or cue)
                # (after_type: both prefix-type patterns)
                if not name_ok:
                    continue
                if bare:
                    # "59 Metsanurga 48, Vadsa": house number, street, number, then a town
                    framed = bool(m.group("num2")) and bool(_TOWN_AFTER.match(text, m.end()))
                    score = 0.6 if cue or in_block or framed else 0.0
                elif cased:
                    # "The 2 Main Drive shafts": prose goes on, so only trust it with a cue
                    prose = re.match(r"[ \t]+([a-z]+)", text[m.end() : m.end() + 30])
                    loose = prose and prose.group(1) not in STOP
                    score = 0.6 if cue or block else (0.3 if loose else 0.7)
                else:
                    score = 0.6 if cue or block else 0.3
                by_end.setdefault(m.end(), []).append((m.start(), bool(m.group("num")), score))
            for end, cands in by_end.items():
                cands = [c for c in cands if c[2] > 0] or cands  # "Suite 574 34 Sireli 74": from "34", after the unit
                numbered = [c for c in cands if c[1]]
                start, _, score = min(numbered or cands, key=lambda c: c[0] if numbered else -c[0])
                found.append((start, end, score))
        return found

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        cased = case_mode(text)
        results = []
        for start, end, score in self._streets(text, cased):
            if score <= 0:
                continue
            end = _continuation(text, end, cased)
            unit = _UNIT_BEFORE.search(text, max(0, start - 24), start)
            start = unit.start() if unit else start  # "Apt. 434 40 Rue de la Sarthe": the unit first
            results.append(result(STREET_ADDRESS, start, end, score, "street address"))
            name = _name_line_above(text, start, cased) if score >= 0.5 else None
            if name:
                results.append(result(PERSON, *name, 0.6, "addressee line"))
        named = _NAMED_STREET.finditer(text, overlapped=True) if _ADDRESS_CUE.search(text) else ()
        for m in named:  # each is kept only after an address cue, so a text without one has none
            if m.group("type").lower() == "st" and cased and not m.group("type")[0].isupper():
                continue
            if _has_cue(text, m.start()) and _name_ok(m.group("name"), cased):
                results.append(result(STREET_ADDRESS, m.start(), m.end(), 0.55, "named street"))
        for m in _BOX_ADDRESSES.finditer(text):
            end = _continuation(text, m.end(), cased)
            unit = _UNIT_BEFORE.search(text, max(0, m.start() - 24), m.start())
            results.append(result(STREET_ADDRESS, unit.start() if unit else m.start(), end, 0.6, "box address"))
        for m in _POSTAL_CUE.finditer(text):
            results.append(result(STREET_ADDRESS, m.start("code"), m.end("code"), 0.6, "postcode"))
        return results
