"""Parse stage: every supported format builds sections, pages and readable tables; every
unparseable input becomes a PermanentError with a reason a person can act on."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from pipelines import parse
from pipelines.errors import MIB, PermanentError
from pipelines.parse import parse_bytes
from schemas.documents import ParsedDocument


def texts(doc: ParsedDocument, kind: str | None = None) -> list[str]:
    return [e.text for e in doc.elements if kind is None or e.kind == kind]


def fails(data: bytes, filename: str, **kwargs: int) -> str:
    with pytest.raises(PermanentError) as info:
        parse_bytes(data, filename, **kwargs)
    return str(info.value)


def make_pdf(pages: list[list[tuple[float, float, str]]]) -> bytes:
    """A minimal PDF by hand: each page is a list of (font size, y, text) lines in Helvetica."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{pid} 0 R" for pid in page_ids).encode()
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % len(pages))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for pid, lines in zip(page_ids, pages):
        ops = b"".join(
            b"BT /F1 %g Tf 72 %g Td (%s) Tj ET\n" % (size, y, text.encode("latin-1"))
            for size, y, text in lines
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (pid + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(ops) + ops + b"endstream")
    out, offsets = io.BytesIO(), []
    out.write(b"%PDF-1.4\n")
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


# Reasons the real-world files in shared/data/docs must give; unit tests reuse the wording.
EXPECTED = {
    "empty.txt": "file is empty",
    "img_example.jpg": "unsupported file type: .jpg (images need OCR, which is not enabled)",
    "simple.zip": ".zip archives are not expanded; extract them into the inbox",
    "password_protected.xlsx": "Office document is password-protected (encrypted)",
    "pdf_password.pdf": "PDF is password-protected",
    "fake-text-all-whitespace.txt": "no text could be extracted",
}

REPORT_PDF = [
    [
        (20, 720, "Quarterly Report"),
        (11, 690, "The warehouse shipped four thousand parcels during the spring"),
        (11, 677, "quarter, and the team expects the number to grow next year."),
        (11, 630, "Costs fell because the new routing software saved fuel on every trip."),
    ],
    [
        (20, 720, "Appendix"),
        (11, 690, "The appendix lists the depots that were visited by the auditors."),
    ],
]


# -- text formats -------------------------------------------------------------------------------


def test_text_sections_follow_titles() -> None:
    data = b"Shipping Policy\n\nWe ship parcels every weekday from the central depot.\n"
    doc = parse_bytes(data, "policy.txt")
    assert doc.file_type == "txt"
    assert doc.title == "Shipping Policy"
    body = doc.elements[-1]
    assert body.kind == "text" and body.section == "Shipping Policy" and body.page is None


def test_markdown_headings_code_and_table() -> None:
    data = (
        b"# Guide\n\nThe guide explains how the depot works in practice.\n\n"
        b"## Setup\n\n```\nmake install\n```\n\n"
        b"| Name | Score |\n| --- | --- |\n| Ada | 3 |\n| Bob | 5 |\n"
    )
    doc = parse_bytes(data, "GUIDE.MD")
    assert doc.file_type == "md" and doc.title == "Guide"
    assert texts(doc, "code") == ["make install"]
    [table] = [e for e in doc.elements if e.kind == "table"]
    assert table.text == "Name | Score\nAda | 3\nBob | 5"
    assert table.section == "Setup"


def test_html_tables_as_rows_and_layout_tables_as_prose() -> None:
    long_cell = "This essay sits in a layout table cell and is long enough to be prose. " * 10
    html = (
        "<html><head><title>x</title><script>var a = 1;</script></head><body>"
        "<h1>Prices</h1><p>The table below shows the current prices for every product.</p>"
        "<table><tr><th>Item</th><th>Price</th></tr><tr><td>Tea</td><td>2</td></tr></table>"
        f"<table><tr><td></td><td>{long_cell}</td></tr></table></body></html>"
    )
    doc = parse_bytes(html.encode(), "prices.html")
    assert doc.title == "Prices"
    assert texts(doc, "table") == ["Item | Price\nTea | 2"]
    assert any(e.kind == "text" and e.text.startswith("This essay") for e in doc.elements)
    assert not any("var a" in t for t in texts(doc))


def test_email_body() -> None:
    message = EmailMessage()
    message["From"] = "ada@example.com"
    message["To"] = "bob@example.com"
    message["Subject"] = "Depot visit"
    message.set_content("The auditors will visit the northern depot on Tuesday morning.")
    doc = parse_bytes(message.as_bytes(), "visit.eml")
    assert any("northern depot" in t for t in texts(doc))


def test_csv_is_one_readable_table() -> None:
    doc = parse_bytes(b"Team,Cups\nBlues,1\nFlyers,2\n", "cups.csv")
    assert texts(doc, "table") == ["Team | Cups\nBlues | 1\nFlyers | 2"]


def test_json_and_broken_json() -> None:
    doc = parse_bytes(b'{"name": "depot", "city": "Leeds"}', "depot.json")
    assert "Leeds" in " ".join(texts(doc))
    assert fails(b'{"name": "depot", "city": ', "depot.json").startswith("file is not valid JSON")


def test_source_code_is_plain_text_of_kind_code() -> None:
    doc = parse_bytes(b'package main\n\nfunc main() {\n\tprintln("hi")\n}\n', "main.go")
    assert doc.file_type == "go" and doc.title is None
    assert {e.kind for e in doc.elements} == {"code"}
    assert "println" in " ".join(texts(doc))


def test_unknown_extension_parses_when_it_is_text() -> None:
    doc = parse_bytes(b'{"event": "created"}\n{"event": "deleted"}\n', "events.ndjson")
    assert doc.file_type == "ndjson" and "deleted" in " ".join(texts(doc))
    assert fails(b"\x00\x01\x02binary", "blob.bin") == "unsupported file type: .bin"


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        ("Grüße aus Köln\n".encode("utf-16"), "greeting.txt", "Grüße aus Köln"),
        ("Der Preis betrug 15,50 €. Très bien, señor.\n".encode("cp1252"), "p.txt", "15,50 €"),
        ("# können\n\näöüß\n".encode("latin-1"), "umlauts.md", "äöüß"),
    ],
)
def test_non_utf8_text(data: bytes, filename: str, expected: str) -> None:
    assert expected in " ".join(texts(parse_bytes(data, filename)))


def test_cp1252_wins_over_lookalike_codepages() -> None:
    data = "<p>El niño comió paella. L'été était très chaud. Die schöne Frau.</p>".encode("cp1252")
    assert "niño" in texts(parse_bytes(data, "page.htm"))[0]


def test_rtf_through_pandoc_and_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    rtf = rb"{\rtf1\ansi{\pard\outlinelevel0\b Depot Notes\par}{\pard The depot opens at six.\par}}"
    doc = parse_bytes(rtf, "notes.rtf")
    assert doc.title == "Depot Notes"
    assert ("The depot opens at six.", "Depot Notes") in [(e.text, e.section) for e in doc.elements]
    monkeypatch.setattr(parse, "_pandoc_available", lambda: False)
    assert fails(rtf, "notes.rtf") == "RTF needs pandoc, which is not installed"


# -- office formats -----------------------------------------------------------------------------


def test_docx_sections_and_table() -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Introduction", level=1)
    document.add_paragraph("The depot handles every parcel for the northern region.")
    table = document.add_table(rows=2, cols=2)
    for row, values in zip(table.rows, [("Name", "Score"), ("Ada", "3")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    document.add_heading("Results", level=1)
    document.add_paragraph("Deliveries were on time for most of the year.")
    buffer = io.BytesIO()
    document.save(buffer)
    doc = parse_bytes(buffer.getvalue(), "report.docx")
    assert doc.title == "Introduction"
    assert texts(doc, "table") == ["Name | Score\nAda | 3"]
    sections = {e.text: e.section for e in doc.elements}
    assert sections["The depot handles every parcel for the northern region."] == "Introduction"
    assert sections["Deliveries were on time for most of the year."] == "Results"


def test_xlsx_sheets_become_pages_with_tables() -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    first = book.active
    first.title = "Cups"
    for row in [("Team", "Cups"), ("Blues", 1), ("Flyers", 2)]:
        first.append(row)
    second = book.create_sheet("Since 67")
    for row in [("Team", "Cups"), ("Leafs", 0)]:
        second.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    doc = parse_bytes(buffer.getvalue(), "cups.xlsx")
    tables = [e for e in doc.elements if e.kind == "table"]
    assert [t.text for t in tables] == [
        "Team | Cups\nBlues | 1\nFlyers | 2",
        "Team | Cups\nLeafs | 0",
    ]
    assert [t.page for t in tables] == [1, 2]


def test_pptx_slides_become_pages() -> None:
    pptx = pytest.importorskip("pptx")
    deck = pptx.Presentation()
    slides = [("Route Plan", "Visit the northern depot"), ("Budget", "Fuel costs fell")]
    for title, bullet in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = bullet
    buffer = io.BytesIO()
    deck.save(buffer)
    doc = parse_bytes(buffer.getvalue(), "plan.pptx")
    assert doc.title == "Route Plan"
    body = [e for e in doc.elements if e.kind != "title"]
    assert [(e.text, e.page, e.section) for e in body] == [
        ("Visit the northern depot", 1, "Route Plan"),
        ("Fuel costs fell", 2, "Budget"),
    ]


def test_encrypted_office_document() -> None:
    reason = "Office document is password-protected (encrypted)"
    fake = parse.OLE2_MAGIC + b"\x00" * 504 + "EncryptedPackage".encode("utf-16-le")
    assert fails(fake, "secret.xlsx") == reason
    msoffcrypto = pytest.importorskip("msoffcrypto")
    docx = pytest.importorskip("docx")
    plain, locked = io.BytesIO(), io.BytesIO()
    docx.Document().save(plain)
    plain.seek(0)
    msoffcrypto.format.ooxml.OOXMLFile(plain).encrypt("hunter2", locked)
    assert fails(locked.getvalue(), "secret.docx") == reason


def test_legacy_binary_office_file_with_new_extension() -> None:
    reason = fails(parse.OLE2_MAGIC + b"\x00" * 600, "old.docx")
    assert reason.startswith("file is corrupt: not a .docx but an older binary Office file")


def test_corrupt_containers() -> None:
    pptx = pytest.importorskip("pptx")
    buffer = io.BytesIO()
    pptx.Presentation().save(buffer)
    assert fails(buffer.getvalue()[:2000], "deck.pptx").startswith("file is corrupt")
    not_a_deck = io.BytesIO()
    with zipfile.ZipFile(not_a_deck, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert fails(not_a_deck.getvalue(), "deck.pptx").startswith("could not parse pptx file: ")


def test_zip_bomb_is_refused() -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b" " * (3 * MIB))
    reason = fails(bomb.getvalue(), "bomb.docx", max_bytes=64 * 1024)
    assert reason.startswith("file expands to 3.0 MiB when unzipped in one member ('word/document.xml')")
    spread = io.BytesIO()  # each member under the cap of one, all of them over the cap of the whole
    with zipfile.ZipFile(spread, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(4):
            archive.writestr(f"word/part{i}.xml", b" " * (200 * 1024))
    reason = fails(spread.getvalue(), "spread.docx", max_bytes=64 * 1024)
    assert reason == "file expands to 0.781 MiB when unzipped, over the 0.625 MiB limit; refusing it"


def _declaring(name: str, size: int) -> bytes:
    """A docx whose member ``name`` declares ``size`` bytes unzipped (its central directory says so)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr(name, b"<w:document/>")
    data = bytearray(buffer.getvalue())
    entry = data.rindex(name.encode()) - 46  # its central directory entry: the name's last occurrence
    assert data[entry:entry + 4] == b"PK\x01\x02"
    data[entry + 24:entry + 28] = size.to_bytes(4, "little")  # uncompressed size
    assert zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name).file_size == size
    return bytes(data)


@pytest.mark.parametrize("declared", [4_000_000_000, 30 * MIB])
def test_a_member_declaring_a_huge_size_is_refused_before_anything_is_inflated(declared: int) -> None:
    started = time.perf_counter()
    reason = fails(_declaring("word/document.xml", declared), "bomb.docx", max_bytes=MIB)
    took = time.perf_counter() - started
    assert reason.startswith(f"file expands to {declared / MIB:.1f} MiB when unzipped") and "word/document.xml" in reason
    assert took < 0.5, took


def test_an_ordinary_docx_of_the_shared_data_still_parses_under_the_member_cap(shared_docs: Path) -> None:
    data = (shared_docs / "handbook-1p.docx").read_bytes()
    assert parse_bytes(data, "handbook-1p.docx", max_bytes=len(data)).elements


# -- PDF -------------------------------------------------------------------------------------


def test_pdf_pages_paragraphs_and_sections() -> None:
    doc = parse_bytes(make_pdf(REPORT_PDF), "report.pdf")
    assert doc.file_type == "pdf" and doc.title == "Quarterly Report"
    by_text = {e.text: e for e in doc.elements}
    merged = (
        "The warehouse shipped four thousand parcels during the spring "
        "quarter, and the team expects the number to grow next year."
    )
    assert by_text[merged].page == 1 and by_text[merged].section == "Quarterly Report"
    costs = by_text["Costs fell because the new routing software saved fuel on every trip."]
    assert costs.page == 1 and costs.kind == "text"
    appendix = by_text["The appendix lists the depots that were visited by the auditors."]
    assert appendix.page == 2 and appendix.section == "Appendix"


def test_pdf_without_text_layer() -> None:
    data = make_pdf([[]])
    assert fails(data, "scan.pdf") == "PDF has no text layer (image-only); OCR is not enabled"


def test_pdf_password_and_copy_protection() -> None:
    pypdf = pytest.importorskip("pypdf")

    def encrypted(user: str, owner: str, permissions: int) -> bytes:
        writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(REPORT_PDF))))
        writer.encrypt(user, owner, permissions_flag=permissions, algorithm="AES-256")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    assert fails(encrypted("secret", "owner", -1), "locked.pdf") == "PDF is password-protected"
    no_copy = encrypted("", "owner", 0b100)  # print only: no copying, no extraction
    assert parse_bytes(no_copy, "nocopy.pdf").title == "Quarterly Report"


def test_corrupt_pdf() -> None:
    assert fails(b"%PDF-1.4\nthis is not really a pdf", "broken.pdf").startswith("file is corrupt")


# -- refusals and failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename", "reason"),
    [
        (b"", "empty.txt", "file is empty"),
        (b" \n\t\n", "blank.txt", "no text could be extracted"),
        (b"<html><body>  </body></html>", "blank.html", "no text could be extracted"),
        (b"\xff\xd8\xff\xe0jpeg", "photo.JPG", EXPECTED["img_example.jpg"]),
        (b"PK\x05\x06" + b"\x00" * 18, "bundle.zip", EXPECTED["simple.zip"]),
        (b"\x00\x01", "Makefile", "unsupported file type: no extension"),
    ],
)
def test_refusals(data: bytes, filename: str, reason: str) -> None:
    assert fails(data, filename) == reason


def test_size_limit() -> None:
    data = b"a" * int(1.5 * MIB)
    assert fails(data, "big.txt", max_bytes=MIB) == "file is 1.5 MiB, over the 1.0 MiB limit"
    huge = b"a" * (50 * MIB + 100_000)
    assert fails(huge, "huge.txt") == "file is 50.1 MiB, over the 50.0 MiB limit"


def test_unexpected_parser_errors_become_permanent(monkeypatch: pytest.MonkeyPatch) -> None:
    from unstructured.partition import csv

    def boom(*args: object, **kwargs: object) -> list[object]:
        raise ValueError("tokenizer exploded\non two lines")

    monkeypatch.setattr(csv, "partition_csv", boom)
    reason = "could not parse csv file: tokenizer exploded on two lines"
    assert fails(b"a,b\n1,2\n", "x.csv") == reason

    def oom(*args: object, **kwargs: object) -> list[object]:
        raise MemoryError

    monkeypatch.setattr(csv, "partition_csv", oom)
    with pytest.raises(MemoryError):
        parse_bytes(b"a,b\n1,2\n", "x.csv")


def test_tokenizer_uses_installed_spacy_model_without_parser() -> None:
    from unstructured.nlp import tokenize

    from pipelines.runtime import SPACY_MODEL

    parse_bytes(b"One short sentence about parcels.", "a.txt")
    nlp = tokenize._get_nlp()
    assert f"{nlp.meta['lang']}_{nlp.meta['name']}" == SPACY_MODEL
    assert "parser" not in nlp.pipe_names  # the sentencizer finds boundaries instead
    assert tokenize.sent_tokenize("First one here. Second one there.") == ["First one here.", "Second one there."]



def test_only_short_lines_are_tagged_and_kinds_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A verbless line of up to 12 words is a title, a longer one stays text, and only the short one reaches the tagger."""
    from unstructured.nlp import tokenize

    parse_bytes(b"warm up", "a.txt")
    tagged: list[str] = []
    run = tokenize._run_pipeline
    monkeypatch.setattr(tokenize, "_run_pipeline", lambda text: tagged.append(text) or run(text))
    tokenize._process_cached.cache_clear()
    tokenize.pos_tag.cache_clear()
    long_line = "Annual figures of the northern reservoirs and the southern canals, pumps, sluices and weirs in tables"
    short_line = "levels of the northern reservoirs"
    doc = parse_bytes(f"{short_line}\n\n{long_line}\n".encode(), "levels.txt")
    assert [(e.text, e.kind) for e in doc.elements] == [(short_line, "title"), (long_line, "text")]
    assert tagged == [short_line]


# -- real-world files (the shared data: skipped where absent, a failure in CI) -----------------------------

MUST_PARSE = {
    "fake-text-utf-16.txt": "Important points",
    "umlauts-non-utf8.md": "äöüß",
    "fake-html-cp1252.html": "El niño",
    "pdf_copy-protected.pdf": "LayoutParser",
    "fake.go": "package",
    "stanley-cups.xlsx": "Team | Location | Stanley Cups",
}
SECONDS_PER_FILE = 60


def test_every_document_of_the_shared_data_parses_or_fails_cleanly(shared_docs: Path) -> None:
    rows, problems = [], []
    for path in sorted(p for p in shared_docs.iterdir() if p.is_file()):
        outcome: list[object] = []
        worker = threading.Thread(target=_attempt, args=(path, outcome), daemon=True)
        started = time.perf_counter()
        worker.start()
        worker.join(SECONDS_PER_FILE)
        seconds = time.perf_counter() - started
        if not outcome:
            problems.append(f"{path.name}: still running after {SECONDS_PER_FILE} s")
            continue
        [result] = outcome
        if isinstance(result, ParsedDocument):
            text = " ".join(e.text for e in result.elements)
            rows.append(f"{path.name:45} parsed ({len(result.elements)} elements) {seconds:5.1f} s")
            if not text.strip():
                problems.append(f"{path.name}: parsed to empty text")
            if path.name in EXPECTED:
                problems.append(f"{path.name}: parsed, expected {EXPECTED[path.name]!r}")
            if path.name in MUST_PARSE and MUST_PARSE[path.name] not in text:
                problems.append(f"{path.name}: {MUST_PARSE[path.name]!r} missing from the text")
        elif isinstance(result, PermanentError):
            rows.append(f"{path.name:45} {result} {seconds:5.1f} s")
            if not str(result).strip():
                problems.append(f"{path.name}: PermanentError without a reason")
            if path.name in EXPECTED and str(result) != EXPECTED[path.name]:
                problems.append(f"{path.name}: {result!s} != {EXPECTED[path.name]!r}")
            if path.name in MUST_PARSE:
                problems.append(f"{path.name}: failed with {result!s}")
        else:
            problems.append(f"{path.name}: {type(result).__name__}: {result}")
    print("\n" + "\n".join(rows))
    assert not problems, "\n".join(problems)


def _attempt(path: Path, outcome: list[object]) -> None:
    try:
        outcome.append(parse_bytes(path.read_bytes(), path.name))
    except BaseException as exc:  # recorded and judged by the test
        outcome.append(exc)


def test_html_nested_deeper_than_lxml_can_build_keeps_its_text() -> None:
    """libxml2 gives up at 256 levels and lxml recovers an empty tree: the text was reported missing."""
    depth = 100_000
    html = (
        "<html><body><h1>Field notes</h1><p>The opening paragraph stays.</p>"
        + "<div>" * depth + "<p>The deepest sentence is still text.</p>" + "</div>" * depth
        + "<p>The closing paragraph stays too.</p><script>var hidden = 1;</script></body></html>"
    )
    started = time.perf_counter()
    found = " ".join(texts(parse_bytes(html.encode(), "deep.html")))
    assert "The deepest sentence is still text." in found
    assert "The opening paragraph stays." in found and "The closing paragraph stays too." in found
    assert "hidden" not in found
    assert time.perf_counter() - started < 30
