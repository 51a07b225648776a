"""Parse stage: raw bytes + file name -> ParsedDocument, or a PermanentError a person can read.

unstructured does the structural work for office, markup and text formats. PDFs are read with
pypdfium2 and each page is handed to ``partition_text``: the ``[pdf]`` extra pulls an OCR stack
that breaks torch here. Every failure leaves as ``PermanentError``; a parse that failed once
fails again, so retrying it would only waste a worker.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import threading
import zipfile
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from typing import Any, TypedDict

from pipelines import runtime  # first: keeps unstructured offline and quiet
from pipelines.errors import MIB, PermanentError, mib, too_large
from pipelines.isolated import Isolated, Stopped
from schemas.documents import Element, ParsedDocument

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MAX_CELL_CHARS = 500  # a longer cell means a layout table, not data
# Caps on what an OOXML/ODF/EPUB archive declares, checked before a byte is inflated (a bomb took
# 7 s of testzip to refuse). XML compresses 5-10x; images, the bulk of big documents, barely at all.
MAX_MEMBER_RATIO = 4  # one member (document.xml, a sheet) may expand to this times max_bytes
MAX_UNZIPPED_RATIO = 10  # all members together

TEXT_EXTS = {"txt", "text", "log"}
CODE_EXTS = {
    "py", "go", "js", "ts", "tsx", "jsx", "java", "c", "h", "cc", "cpp", "hpp", "cs", "rs",
    "rb", "php", "swift", "kt", "scala", "sh", "bash", "sql", "r", "lua", "pl", "yaml", "yml",
    "toml", "ini", "cfg", "xml",
}  # fmt: skip
IMAGE_EXTS = {"jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "heic"}
ARCHIVE_EXTS = {"zip", "tar", "gz", "tgz", "bz2", "xz", "7z", "rar"}
LEGACY_OFFICE = {"doc": "docx", "xls": "xlsx", "ppt": "pptx"}
ZIP_FORMATS = {"docx", "pptx", "xlsx", "odt", "epub"}
OOXML_FORMATS = {"docx", "pptx", "xlsx"}

KINDS = {
    "Title": "title",
    "ListItem": "list",
    "List": "list",
    "Table": "table",
    "CodeSnippet": "code",
    "Formula": "formula",
    "FigureCaption": "caption",
    "Image": "image",
}
DROPPED = {"Header", "Footer", "PageBreak", "PageNumber", "Page-header", "Page-footer"}

_pdfium_lock = threading.Lock()  # pdfium is not thread-safe
_tokenizer_ready = False


def parse_bytes(data: bytes, filename: str, *, max_bytes: int = 50 * MIB) -> ParsedDocument:
    """Turn one file's bytes into ordered elements with sections and page numbers."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name.lstrip(".") else ""
    if not data:
        raise PermanentError("file is empty")
    if len(data) > max_bytes:
        raise too_large("file", len(data), max_bytes)
    _check_container(data, ext, max_bytes)
    try:
        if ext == "pdf":
            elements = _parse_pdf(data, name)
        else:
            elements = _to_elements(_partitioner(data, ext, name)(), code=ext in CODE_EXTS)
    except (PermanentError, MemoryError):
        raise
    except Exception as exc:  # a parser bug or malformed input: this file will never parse
        if _out_of_memory(exc):
            raise MemoryError("the parser ran out of memory") from exc
        kind = f"{ext} file" if ext else "file"
        raise PermanentError(f"could not parse {kind}: {_short(exc)}") from exc
    if not elements:
        raise PermanentError("no text could be extracted")
    title = next((e.text for e in elements if e.kind == "title"), None)
    return ParsedDocument(file_type=ext, title=title, elements=elements)


def parse_isolated(data: bytes, filename: str, *, max_bytes: int, memory_bytes: int, time_s: float) -> ParsedDocument:
    """``parse_bytes`` in a forked child that may grow by ``memory_bytes`` and is killed after ``time_s``.

    An over-expanding document (XML of millions of tiny elements) fails there with a reason
    instead of taking the worker down; the worker's memory is what it was before."""
    prepare()
    try:
        parse = functools.partial(parse_bytes, max_bytes=max_bytes)
        return _isolated(memory_bytes).run(parse, data, filename, time_s=time_s)
    except Stopped as stop:
        if stop.why == "time":
            raise PermanentError("parse took longer than its time limit") from None  # as the step runtime says
        if stop.why == "memory":
            raise PermanentError(
                f"needs more than {mib(memory_bytes)} to parse; raise SLUICE_PARSE_MEMORY_MIB if the file is genuine"
            ) from None
        raise PermanentError(
            f"the parser crashed ({stop.why}) at {mib(stop.peak_rss_bytes)} resident; parses may take"
            f" {mib(memory_bytes)} more than their worker"
        ) from None


@functools.cache
def _isolated(memory_bytes: int) -> Isolated:
    return Isolated(memory_bytes)


@functools.cache
def prepare() -> None:
    """Import every parser and load the tokenizer's model in this process, once: each forked parse
    inherits them instead of paying seconds of imports."""
    import charset_normalizer  # noqa: F401  (_decode)
    import pypdfium2  # noqa: F401
    from unstructured.nlp import tokenize
    from unstructured.partition import csv, docx, email, epub, html, json, md, odt, pptx, rtf, text, xlsx  # noqa: F401

    _point_tokenizer_at_installed_model()
    tokenize._get_nlp()


def _out_of_memory(exc: BaseException | None) -> bool:
    """libxml2 reports a failed allocation as a parse error (lxml: code ERR_NO_MEMORY), not MemoryError."""
    from lxml import etree

    while exc is not None:
        if isinstance(exc, MemoryError):
            return True
        if isinstance(exc, etree.LxmlError) and getattr(exc, "code", None) == etree.ErrorTypes.ERR_NO_MEMORY:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _Meta(TypedDict):
    """What every unstructured partition call is given besides the document."""

    metadata_filename: str
    languages: list[str]


def _partitioner(data: bytes, ext: str, name: str) -> Callable[[], list[Any]]:
    """Pick the unstructured partition call for an extension, or refuse the type up front."""
    fmt = _FORMATS.get(ext)
    if fmt is None and ext not in _REFUSED:
        fmt = "text" if ext in TEXT_EXTS | CODE_EXTS or _looks_like_text(data) else None
    if fmt is None:
        raise PermanentError(_unsupported_reason(ext))
    if fmt in ("odt", "rtf", "epub") and not _pandoc_available():
        raise PermanentError(f"{ext.upper()} needs pandoc, which is not installed")
    _point_tokenizer_at_installed_model()
    from unstructured.partition import csv, docx, email, epub, md, odt, pptx, rtf, text, xlsx

    # languages=[""] skips unstructured's per-document language detection (langdetect,
    # ~7 ms a document): nothing downstream reads the language.
    file, meta = io.BytesIO(data), _Meta(metadata_filename=name, languages=[""])
    calls: dict[str, Callable[[], list[Any]]] = {
        "md": lambda: md.partition_md(text=_decode(data), **meta),
        "html": lambda: _partition_html(_decode(data), meta),
        "eml": lambda: email.partition_email(file=file, process_attachments=False, **meta),
        "docx": lambda: docx.partition_docx(file=file, **meta),
        "pptx": lambda: pptx.partition_pptx(file=file, **meta),
        "xlsx": lambda: xlsx.partition_xlsx(file=file, **meta),
        "csv": lambda: csv.partition_csv(file=file, **meta),
        "json": lambda: _partition_json(data, name),
        "odt": lambda: odt.partition_odt(file=file, **meta),  # pandoc, from pypandoc-binary
        "rtf": lambda: rtf.partition_rtf(file=file, **meta),
        "epub": lambda: epub.partition_epub(file=file, **meta),
        "text": lambda: text.partition_text(text=_decode(data), **meta),
    }
    return calls[fmt]


@functools.cache
def _pandoc_available() -> bool:
    """odt, rtf and epub go through pandoc (shipped by pypandoc-binary); say so if it is gone."""
    try:
        import pypandoc

        return bool(pypandoc.get_pandoc_version())
    except (ImportError, OSError, RuntimeError):
        return False


_FORMATS = {
    **{ext: ext for ext in ("md", "html", "eml", "docx", "pptx", "xlsx", "csv", "json")},
    **{ext: ext for ext in ("odt", "rtf", "epub")},
    "markdown": "md",
    "htm": "html",
}
_REFUSED = IMAGE_EXTS | ARCHIVE_EXTS | set(LEGACY_OFFICE)


def _unsupported_reason(ext: str) -> str:
    """Say why a type is refused and what the user can do about it."""
    if ext in IMAGE_EXTS:
        return f"unsupported file type: .{ext} (images need OCR, which is not enabled)"
    if ext in ARCHIVE_EXTS:
        return f".{ext} archives are not expanded; extract them into the inbox"
    if ext in LEGACY_OFFICE:
        modern = LEGACY_OFFICE[ext]
        return f"unsupported file type: .{ext} (legacy Office format; save it as .{modern})"
    return f"unsupported file type: .{ext}" if ext else "unsupported file type: no extension"


def _check_container(data: bytes, ext: str, max_bytes: int) -> None:
    """Reject encrypted, corrupt or zip-bomb containers before a parser chokes on them."""
    if ext not in ZIP_FORMATS:
        return
    if data.startswith(OLE2_MAGIC) and ext in OOXML_FORMATS:
        if "EncryptedPackage".encode("utf-16-le") in data:
            raise PermanentError("Office document is password-protected (encrypted)")
        raise PermanentError(
            f"file is corrupt: not a .{ext} but an older binary Office file; save it as .{ext}"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_declared_sizes(archive.infolist(), max_bytes)
            bad = archive.testzip()  # inflates at most the declared sizes: zipfile stops there
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise PermanentError(f"file is corrupt: not a valid .{ext} container ({exc})") from exc
    except NotImplementedError as exc:  # e.g. an unsupported compression method
        raise PermanentError(f"file is corrupt: {exc}") from exc
    if bad is not None:
        raise PermanentError(f"file is corrupt: damaged member {bad!r} in the .{ext} container")


def _check_declared_sizes(members: list[zipfile.ZipInfo], max_bytes: int) -> None:
    """Refuse on the sizes the archive declares (ZipInfo.file_size), per member and in total."""
    largest = max(members, key=lambda m: m.file_size, default=None)
    if largest is not None and largest.file_size > MAX_MEMBER_RATIO * max_bytes:
        raise PermanentError(
            f"file expands to {mib(largest.file_size)} when unzipped in one member ({largest.filename[:100]!r}), "
            f"over the {mib(MAX_MEMBER_RATIO * max_bytes)} a member may take; refusing it"
        )
    unzipped = sum(m.file_size for m in members)
    if unzipped > MAX_UNZIPPED_RATIO * max_bytes:
        raise PermanentError(
            f"file expands to {mib(unzipped)} when unzipped, over the {mib(MAX_UNZIPPED_RATIO * max_bytes)} limit;"
            " refusing it"
        )


def _parse_pdf(data: bytes, filename: str) -> list[Element]:
    """Rebuild each page's paragraphs from pdfium's text layer, then classify them."""
    import pypdfium2 as pdfium
    from unstructured.partition.text import partition_text

    with _pdfium_lock:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise PermanentError("PDF is password-protected") from exc
            raise PermanentError(f"file is corrupt: {_short(exc)}") from exc
        try:
            pages = [_page_paragraphs(page) for page in pdf]
        finally:
            pdf.close()
    if not any(pages):
        raise PermanentError("PDF has no text layer (image-only); OCR is not enabled")
    raw: list[Any] = []
    for number, paragraphs in enumerate(pages, start=1):
        page_elements = partition_text(
            text="\n".join(paragraphs), paragraph_grouper=False, metadata_filename=filename, languages=[""]
        )
        for element in page_elements:
            element.metadata.page_number = number
        raw.extend(page_elements)
    return _to_elements(raw)


_LIST_START = re.compile(r"^\s*([•●▪◦‣∙]|[-–*]\s|\(?\d{1,2}[.)]\s)")


def _page_paragraphs(page: Any) -> list[str]:
    """Group pdfium's text lines into paragraphs by spacing, font size and bullets.

    pdfium gives one line per visual line with no blank lines between paragraphs; fed raw to
    partition_text every line would become its own element (and many would pass as titles).
    """
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    lines: list[tuple[str, tuple[float, float, float, float], float]] = []
    chars: list[str] = []
    box: list[float] | None = None
    size = 0.0
    try:
        count = textpage.count_chars()
        for i in range(count + 1):  # one step past the end flushes the last line
            code = pdfium_c.FPDFText_GetUnicode(textpage, i) if i < count else 10
            char = chr(code) if code else " "
            if char == "\n":
                if box is not None:
                    lines.append(("".join(chars), (box[0], box[1], box[2], box[3]), size))
                chars, box = [], None
            elif char != "\r":
                chars.append(char)
                if char.isspace() or char == "\x02":  # \x02: pdfium's end-of-line hyphen
                    continue
                left, bottom, right, top = textpage.get_charbox(i, loose=True)
                if box is None:
                    box = [left, bottom, right, top]
                    size = pdfium_c.FPDFText_GetFontSize(textpage, i)
                else:
                    box[0], box[1] = min(box[0], left), min(box[1], bottom)
                    box[2], box[3] = max(box[2], right), max(box[3], top)
    finally:
        textpage.close()
        page.close()

    paragraphs: list[str] = []
    previous: tuple[float, float, float, float] | None = None
    previous_size = 0.0
    for text, (left, bottom, right, top), line_size in lines:
        text = text.strip()
        if previous is None:
            new = True
        else:
            _, p_bottom, _, p_top = previous
            same_row = top > p_bottom and bottom < p_top  # superscripts, table cells
            height = max(p_top - p_bottom, 1.0)
            new = bool(_LIST_START.match(text)) or (
                not same_row
                and (
                    abs(line_size - previous_size) > 0.15 * max(previous_size, 1.0)
                    or p_bottom - top > 0.5 * height  # a blank gap
                    or top > p_top  # moved up: next column or a new block
                )
            )
        if new or not paragraphs:
            paragraphs.append(text)
        else:
            last = paragraphs[-1]
            paragraphs[-1] = (last[:-1] if last.endswith("\x02") else last + " ") + text
        if not (previous is not None and same_row):
            previous, previous_size = (left, bottom, right, top), line_size
    cleaned = (" ".join(p.replace("\x02", "").split()) for p in paragraphs)
    return [p for p in cleaned if p]


# Tags that end a paragraph when a page too deep for lxml is read as plain text.
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
    "pre", "section", "table", "td", "th", "tr", "ul",
}  # fmt: skip


def _partition_html(text: str, meta: _Meta) -> list[Any]:
    """unstructured's HTML partition, or the page's text when lxml cannot build its tree.

    libxml2 stops at 256 levels of nesting (ERR_RESOURCE_LIMIT) and lxml "recovers" an empty or cut
    tree, so a deeply nested page came out as "no text could be extracted" with its text intact.
    Such a page is read by the standard library's tokenizer, which keeps no tree, as paragraphs."""
    from unstructured.partition.html import partition_html
    from unstructured.partition.text import partition_text

    if not _too_deep_for_lxml(text):
        return partition_html(text=text, **meta)
    reader = _FlatText()
    reader.feed(text)
    reader.close()
    return partition_text(text="".join(reader.parts), **meta)


def _too_deep_for_lxml(text: str) -> bool:
    """True when libxml2's HTML parser gives up on the nesting depth (a C pass: ~30 ms a MB)."""
    from lxml import etree

    parser = etree.HTMLParser()
    etree.fromstring(text, parser)
    return any(error.type_name == "ERR_RESOURCE_LIMIT" for error in parser.error_log)


class _FlatText(HTMLParser):
    """A page's text with a blank line at every block boundary; script and style left out."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self._break()

    def handle_data(self, data: str) -> None:
        if not self._skipping and data.strip():
            self.parts.append(data)

    def _break(self) -> None:
        if self.parts and self.parts[-1] != "\n\n":  # 100,000 closing tags make one break
            self.parts.append("\n\n")


def _partition_json(data: bytes, name: str) -> list[Any]:
    """Validate JSON ourselves so a broken file gets a precise reason."""
    from unstructured.partition.json import partition_json

    text = _decode(data)
    try:
        json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PermanentError(f"file is not valid JSON: {_short(exc)}") from exc
    return partition_json(text=text, metadata_filename=name)


def _decode(data: bytes) -> str:
    """Decode text bytes: a BOM, then strict UTF-8, then charset detection.

    unstructured's own detection takes charset_normalizer's first guess, which reads Western
    cp1252 text as cp1250 ("nińo") and short text as anything (cp864 for "äöüß"): prefer
    cp1252 when it is as clean as the best guess or the text is too short to judge.
    """
    import codecs

    import charset_normalizer

    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise PermanentError("could not detect the text encoding (is it really a text file?)")
    western = b"\x00" not in data and best.coherence < 0.2  # too little text to tell a language
    western = western or any(
        m.chaos <= best.chaos and "cp1252" in m.could_be_from_charset for m in matches
    )
    if western:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            pass
    return str(best)


def _looks_like_text(data: bytes) -> bool:
    """True for UTF-8 (or BOM-marked) bytes without NULs: unknown extensions parse as text."""
    head = data[:65536]
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 64 KiB boundary
            return False
    return b"\x00" not in head


def _to_elements(raw: Sequence[Any], *, code: bool = False) -> list[Element]:
    """Map unstructured elements to ours: kinds, nearest title as section, tables as text."""
    out: list[Element] = []
    section: str | None = None
    for item in raw:
        category = getattr(item, "category", "Text")
        if category in DROPPED:
            continue
        text = (item.text or "").strip()
        if category == "Table":
            table = _table_text(getattr(item.metadata, "text_as_html", None))
            text, category = (table, category) if table else (text, "Text")
        if not text:
            continue
        kind = "code" if code else KINDS.get(category, "text")
        if kind == "title":
            section = text
        out.append(Element(text=text, kind=kind, section=section, page=item.metadata.page_number))
    return out


class _TableText(HTMLParser):
    """Collect the outermost table's cells row by row; a nested table stays inside its cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._depth = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._depth += 1
        elif self._depth <= 1 and tag == "tr":
            self.rows.append([])
        elif self._depth <= 1 and tag in ("td", "th"):
            self._cell = []
        elif self._cell is not None and tag in ("br", "p", "div", "li", "tr", "td", "th"):
            self._cell.append(" ")  # keeps words of paragraphs or nested cells apart

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._depth -= 1
        elif tag in ("td", "th") and self._depth <= 1 and self._cell is not None:
            if not self.rows:
                self.rows.append([])
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table_text(html: str | None) -> str:
    """Rows on lines, cells joined by " | "; empty for a layout table or one without HTML.

    HTML pages and e-mails use tables for layout: a \"table\" of one cell, or one with a cell
    holding a whole article, reads better as prose.
    """
    if not html:
        return ""
    parser = _TableText()
    parser.feed(html)
    parser.close()
    rows = [row for row in parser.rows if any(row)]
    cells = [cell for row in rows for cell in row if cell]
    if len(cells) < 2 or max(len(cell) for cell in cells) > MAX_CELL_CHARS:
        return ""
    return "\n".join(" | ".join(row) for row in rows)


def _point_tokenizer_at_installed_model() -> None:
    """unstructured downloads en_core_web_sm on first use; use the installed model, never fetch.

    Its element heuristics read part-of-speech tags and sentence boundaries only, so
    the model is loaded without its dependency parser (the rule-based sentencizer
    finds the boundaries): parsing costs a third less.
    """
    global _tokenizer_ready
    if _tokenizer_ready:
        return
    import spacy
    from unstructured.nlp import tokenize

    def _load() -> spacy.language.Language:
        nlp = spacy.load(runtime.SPACY_MODEL, exclude=["parser", "ner", "lemmatizer", "attribute_ruler"])
        nlp.add_pipe("sentencizer")
        return nlp

    tokenize._load_spacy_model = _load
    tokenize._get_nlp.cache_clear()
    _untagged_splits()
    _verbs_only_for_title_candidates()
    _tokenizer_ready = True


def _untagged_splits() -> None:
    """Sentence splits and word lists without the tagger; only part-of-speech checks pay for it.

    unstructured runs the whole pipeline for all three of its text helpers. Tokens and the
    rule-based sentencizer's boundaries do not depend on the tags, so the output is the same;
    measured on 300 CISI abstracts: 10.5 -> 4.1 ms a document, identical elements.
    """
    from unstructured.nlp import tokenize
    from unstructured.partition import text_type

    def split(text: str) -> Any:
        nlp = tokenize._get_nlp()
        text = str(text)
        if len(text) > nlp.max_length:  # unstructured's own cut, so long texts split the same way
            cut = text.rfind(" ", max(0, nlp.max_length - 256), nlp.max_length)
            text = text[: cut if cut != -1 else nlp.max_length]
        return nlp.get_pipe("sentencizer")(nlp.make_doc(text))

    size = tokenize.CACHE_MAX_SIZE
    tokenize._tokenize_for_cache = functools.lru_cache(maxsize=size)(lambda text: tuple(s.text for s in split(text).sents))
    text_type.word_tokenize = functools.lru_cache(maxsize=size)(lambda text: [t.text for t in split(text)])


def _verbs_only_for_title_candidates() -> None:
    """Tag an element's words only where the verb check can change its kind for us.

    unstructured tags every short element to tell narrative text from the rest
    ("contains a verb"). Narrative and plain text are both our "text", and the rest
    can be a title only within unstructured's own word bound (``is_possible_title``),
    so a longer element's verbs change nothing: it skips the tagger. Measured on
    300 CISI abstracts: 5.8 -> ~2 ms a document; identical elements there and on
    the 41 files of many formats in ../shared/data/docs.
    """
    from unstructured.partition import text_type

    tagged = text_type.contains_verb

    def contains_verb(text: str) -> bool:
        words = int(os.environ.get("UNSTRUCTURED_TITLE_MAX_WORD_LENGTH", 12))  # is_possible_title's bound
        return len(text.split(" ")) > words or tagged(text)

    text_type.contains_verb = contains_verb


def _short(exc: BaseException, limit: int = 200) -> str:
    """One line naming the exception, short enough for a dead-letter record."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return message if len(message) <= limit else message[: limit - 1] + "…"
