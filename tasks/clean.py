"""Clean: Unicode normalisation, replacement rules (literal or regular expressions, in order), lowercasing and
truncation, as declared; exact over a text given in chunks of any size.

Chunks are exact because each step holds back the end of what it has seen until more text shows how it
ends: a rule holds back `max_match` characters, the most a match may read from where it starts (its own
length and any lookahead); normalisation and lowercasing hold back to the last character that nothing
before it can change (normalisation: ASCII, a CJK ideograph, whitespace; lowercasing: whitespace, a digit,
a CJK ideograph). A match found longer than `max_match`, or a longer run without such a character, is an
error; a pattern that must read further than `max_match` to decide (a far lookahead, a match that would
be longer) is the one case `max_match` must be raised for without being told.
"""

from __future__ import annotations

import contextlib
import importlib
import queue
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.errors import CharflowError, Interrupted
from tasks.text_reader import TextReader

if TYPE_CHECKING:
    import numpy as np

# re's own parser and opcodes (private modules without stubs): they know every construct a pattern may hold.
_parser: Any = importlib.import_module("re._parser")
_constants: Any = importlib.import_module("re._constants")

BOOK_MAX_CHARS = 10_000
MAX_MATCH = 1 << 20  # characters: the longest match (or unbroken run) a step may hold back
# The most a deployment's parameters may let one scan of a user's pattern run: a worker is never tied up longer.
MAX_REGEX_TIMEOUT = 60.0


class CleanError(CharflowError, ValueError):
    """Cleaning that cannot be done exactly, or that leaves nothing to learn from."""


class Replacement(BaseModel):
    """Replace `old` by `new`: a literal string, or (`regex`) a Python `re` pattern with `re.sub`'s template."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    old: str = Field(min_length=1)
    new: str
    regex: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        # ("\n", " ") is the literal rule: the spelling of the book's table, and of JSON parameters.
        if isinstance(value, list | tuple) and len(value) == 2:
            return {"old": value[0], "new": value[1]}
        return value

    @model_validator(mode="after")
    def _chunkable(self) -> Replacement:
        if self.regex:
            why_not_chunkable(self.old)
            try:  # the empty alternative matches "", so the replacement is expanded once with the pattern's groups
                re.sub(f"{self.old}|", self.new, "")
            except (re.error, IndexError) as exc:
                raise ValueError(f"replacement {self.new!r} for regex {self.old!r} is not valid: {exc}") from None
        return self


class CleanParams(BaseModel):
    """The book's cleaning by default: newlines to spaces, the first 10,000 characters."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    normalize: Literal["NFC", "NFKC"] | None = Field(None, description="Unicode normalisation (none when not given)")
    # In order, each on the output of the one before ("\r\n" before "\n").
    replacements: tuple[Replacement, ...] = Field(
        (Replacement(old="\n", new=" "), Replacement(old="\r", new=" ")),
        description="replacement, repeatable, applied in order",
    )
    lowercase: bool = Field(False, description="lowercase the text")
    max_chars: int | None = Field(default=BOOK_MAX_CHARS, gt=0, description="keep the first N characters, or 'none'")
    max_match: int = Field(
        default=MAX_MATCH,
        gt=0,
        description="the most characters a rule's match may read from where it starts, lookahead included, and "
        "the longest run that normalising or lowercasing holds back (characters)",
    )
    regex_timeout: float = Field(
        default=1.0,
        gt=0,
        le=MAX_REGEX_TIMEOUT,
        description=f"seconds a --regex rule may take on one scan of at most --max-match characters (one match "
        f"at most), {MAX_REGEX_TIMEOUT:.0f} at most: a pattern that backtracks without end is refused, not waited for",
        json_schema_extra={"keyed": False},  # a bound on the work, not on what it makes
    )

    @field_validator("replacements", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value


def why_not_chunkable(pattern: str) -> None:
    """Refuse a pattern whose matches depend on text a chunk does not hold: what lies before the restart
    point (lookbehind), the ends of the whole text (`^`, `$`, `\\A`, `\\Z` without MULTILINE), or an earlier
    group (backreferences). A bad pattern is refused with `re`'s own message."""
    try:
        parsed = _parser.parse(pattern)
    except re.error as exc:
        raise ValueError(f"regex {pattern!r} does not compile: {exc}") from None
    reason = next(_refusals(parsed, multiline=bool(parsed.state.flags & re.MULTILINE)), None)
    if reason is not None:
        raise ValueError(f"regex {pattern!r} cannot be applied chunk by chunk: it {reason}")


def _refusals(items: Any, multiline: bool) -> Iterator[str]:
    """Why each construct of a parsed pattern cannot be applied chunk by chunk, in the pattern's order."""
    for op, av in items:
        reason = _refusal(op, av, multiline)
        if reason is not None:
            yield reason
        for subpattern in _subpatterns(av):
            yield from _refusals(subpattern, multiline)


def _refusal(op: Any, av: Any, multiline: bool) -> str | None:
    if op in (_constants.ASSERT, _constants.ASSERT_NOT) and av[0] < 0:
        return "looks behind"
    if op in (_constants.GROUPREF, _constants.GROUPREF_EXISTS):
        return "refers back to a group"
    if op is _constants.AT and av in (_constants.AT_BEGINNING_STRING, _constants.AT_END_STRING):
        return "anchors at the ends of the whole text (\\A, \\Z)"
    if op is _constants.AT and av in (_constants.AT_BEGINNING, _constants.AT_END) and not multiline:
        return "anchors with ^ or $ without MULTILINE ((?m))"
    return None


def _subpatterns(av: Any) -> Iterator[Any]:
    """The nested patterns of an operation's argument (a group's body, each branch of an alternation)."""
    for value in av if isinstance(av, list | tuple) else [av]:
        if isinstance(value, _parser.SubPattern):
            yield value
        elif isinstance(value, list):
            yield from (item for item in value if isinstance(item, _parser.SubPattern))


def clean(text: str, params: CleanParams) -> str:
    """The whole text at once: the reference the chunked path must equal."""
    if params.normalize:
        text = unicodedata.normalize(params.normalize, text)
    for rule in params.replacements:
        text = re.sub(rule.old, rule.new, text) if rule.regex else text.replace(rule.old, rule.new)
    if params.lowercase:
        text = text.lower()
    if params.max_chars is not None:
        text = text[: params.max_chars]
    return text


def clean_chunks(
    chunks: Iterable[str], params: CleanParams, should_stop: Callable[[], bool] = lambda: False
) -> Iterator[str]:
    """`clean` over a text given in chunks, streaming: each step holds back only what it must. A --regex rule's
    scan is given up when `should_stop` says so (a Ctrl-C heard within a long match)."""
    stream: Iterable[str] = chunks
    if params.normalize:
        form = params.normalize
        stream = _at_stable_points(
            stream,
            lambda text: unicodedata.normalize(form, text),
            stable_for_normalizing,
            params,
            "an ASCII character, a CJK ideograph or whitespace",
        )
    for rule in params.replacements:
        if rule.regex:
            # The `regex` package: `re`'s patterns, with a time limit (`re` has none: `(a+)+b` ran for good).
            pattern = regex.compile(rule.old)
            stream = _substitute(stream, pattern, rule.new, params.max_match, params.regex_timeout, should_stop)
        elif len(rule.old) == 1:
            stream = _replace_each(stream, rule.old, rule.new)
        else:
            stream = _substitute(stream, re.compile(re.escape(rule.old)), _literal(rule.new), len(rule.old))
    if params.lowercase:
        stream = _at_stable_points(
            stream, str.lower, stable_for_lowercasing, params, "whitespace, a digit or a CJK ideograph"
        )
    yield from _truncate(stream, params.max_chars)


def _replace_each(chunks: Iterable[str], old: str, new: str) -> Iterator[str]:
    """A one-character rule needs no context: chunk by chunk."""
    for chunk in chunks:
        yield chunk.replace(old, new)


def _literal(text: str) -> Callable[[re.Match[str]], str]:
    return lambda match: text


def _truncate(chunks: Iterable[str], max_chars: int | None) -> Iterator[str]:
    budget = max_chars
    for chunk in chunks:
        if budget is not None:
            chunk = chunk[:budget]
            budget -= len(chunk)
        if chunk:
            yield chunk
        if budget == 0:
            return


def _cjk(code: int) -> bool:
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF


def stable_for_normalizing(char: str) -> bool:
    """It never composes with what precedes it, nor reorders with it: normalising stops and starts there."""
    return ord(char) < 0x80 or _cjk(ord(char)) or char.isspace()


def stable_for_lowercasing(char: str) -> bool:
    """Neither cased nor case-ignorable: the search for a final sigma's context stops at it (the only
    lowercasing that depends on neighbours)."""
    return char.isspace() or char.isdigit() or _cjk(ord(char))


def _at_stable_points(
    chunks: Iterable[str],
    apply: Callable[[str], str],
    stable: Callable[[str], bool],
    params: CleanParams,
    stable_chars: str,
) -> Iterator[str]:
    """`apply` (normalisation, lowercasing) piece by piece, each piece ending before a stable character;
    only each new chunk is searched for one, so small chunks cost no more than large ones."""
    held: list[str] = []
    held_chars = 0
    for chunk in chunks:
        cut = len(chunk)
        while cut > 0 and not stable(chunk[cut - 1]):
            cut -= 1
        if cut == 0:  # no stable character: all of it waits
            held.append(chunk)
            held_chars += len(chunk)
            if held_chars > params.max_match:
                raise CleanError(
                    f"{held_chars:,} characters in a row without {stable_chars}, more than --max-match "
                    f"{params.max_match:,}: raise --max-match to normalise or lowercase them"
                )
            continue
        if piece := "".join(held) + chunk[: cut - 1]:  # up to, not including, the stable character
            yield apply(piece)
        held, held_chars = [chunk[cut - 1 :]], len(chunk) - cut + 1
    if held_chars:
        yield apply("".join(held))


def _substitute(
    chunks: Iterable[str],
    pattern: Any,
    new: str | Callable[[Any], str],
    max_match: int,
    timeout: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[str]:
    """`pattern.sub(new, whole_text)` over chunks. Matching resumes where the whole text's scan would: after the
    last match it kept, or in text no match can start in; one character of context stays in front, so that
    `\\b` and MULTILINE `^` see the character before. With `timeout` (a `regex` pattern), each scan (of chunks
    cut to --max-match characters) has that many seconds."""
    if timeout is not None:
        chunks = _at_most(chunks, max_match)
    context, pending = "", ""
    literal = None if callable(new) or "\\" in new else new
    arrived: list[str] = []
    arrived_chars = 0
    for final, chunk in _with_end(chunks):
        # Scan once at least max_match new characters are in: each scan then reads at most twice what is
        # new, however small the chunks (one per small file of a folder).
        arrived.append(chunk)
        arrived_chars += len(chunk)
        if not final and arrived_chars < max_match:
            continue
        chunk = "".join(arrived)
        arrived, arrived_chars = [], 0
        text = context + pending + chunk
        start, end = len(context), len(text)
        limit = end if final else end - max_match
        pieces, position, resume = [], start, None
        for match in _matches(pattern, text, start, timeout, should_stop):
            if match.end() - match.start() > max_match:
                raise CleanError(
                    f"regex {pattern.pattern!r} matched {match.end() - match.start():,} characters, more than "
                    f"--max-match {max_match:,}: raise --max-match"
                )
            if not final and (match.start() >= limit or match.end() >= end):
                resume = match.start()  # it may end otherwise with more text: match it again then
                break
            pieces.append(text[position : match.start()])
            if literal is not None:
                pieces.append(literal)
            else:
                pieces.append(new(match) if callable(new) else match.expand(new))
            position = match.end()
        if final:
            pieces.append(text[position:])
            yield "".join(pieces)
            return
        # Every kept match starts before `limit`, so the cut lies beyond the last one (an empty match included).
        cut = max(position, min(limit, resume if resume is not None else limit))
        pieces.append(text[position:cut])
        if out := "".join(pieces):
            yield out
        context, pending = text[max(cut - 1, 0) : cut], text[cut:]


def _at_most(chunks: Iterable[str], size: int) -> Iterator[str]:
    for chunk in chunks:
        for start in range(0, len(chunk), size):
            yield chunk[start : start + size]


class _Scan:
    """A user's pattern scanned in a thread of its own, the GIL let go, its matches handed over a few at a time;
    `give_up` lets the thread go at its next match (or at its time limit)."""

    END = object()

    def __init__(self, pattern: Any, text: str, start: int, timeout: float):
        self.handed: queue.Queue[Any] = queue.Queue(maxsize=256)
        self.abandoned = threading.Event()
        threading.Thread(target=self._run, args=(pattern, text, start, timeout), name="regex-scan", daemon=True).start()

    def _hand(self, item: Any) -> bool:
        while not self.abandoned.is_set():
            with contextlib.suppress(queue.Full):
                self.handed.put(item, timeout=0.1)
                return True
        return False

    def _run(self, pattern: Any, text: str, start: int, timeout: float) -> None:
        try:
            for match in pattern.finditer(text, start, timeout=timeout, concurrent=True):
                if not self._hand(match):
                    return
            self._hand(self.END)
        except TimeoutError as exc:
            self._hand(exc)

    def next(self) -> Any:
        """A match, END, the TimeoutError; None when nothing came within a tenth of a second."""
        try:
            return self.handed.get(timeout=0.1)
        except queue.Empty:
            return None

    def give_up(self) -> None:
        self.abandoned.set()


def _matches(
    pattern: Any, text: str, start: int, timeout: float | None, should_stop: Callable[[], bool] = lambda: False
) -> Iterator[Any]:
    """The scan's matches. With a time limit (a user's pattern), scanned apart and waited for in tenths of a
    second: a stop asked meanwhile is heard at once, not when a long match ends."""
    if timeout is None:
        yield from pattern.finditer(text, start)
        return
    scan = _Scan(pattern, text, start, timeout)
    try:
        while (item := scan.next()) is not _Scan.END:
            if should_stop():
                raise Interrupted(f"stopped in a scan of regex {pattern.pattern!r}; nothing was published")
            if isinstance(item, TimeoutError):
                raise CleanError(
                    f"regex {pattern.pattern!r} ran past --regex-timeout {timeout:g} s on {len(text) - start:,} "
                    "characters (it backtracks without end on this text); simplify the pattern, or raise "
                    f"--regex-timeout (at most {MAX_REGEX_TIMEOUT:.0f})"
                )
            if item is not None:
                yield item
    finally:
        scan.give_up()


def _with_end(chunks: Iterable[str]) -> Iterator[tuple[bool, str]]:
    """Each chunk, and whether it is the last; an empty last one when the text ends."""
    for chunk in chunks:
        yield False, chunk
    yield True, ""


def ascii_translation(params: CleanParams) -> bytes | None:
    """A byte table when cleaning is a per-byte map of the UTF-8 text: ASCII-to-ASCII single characters only.

    ASCII bytes never occur inside a multi-byte UTF-8 sequence, so such replacements need no decoding.
    """
    if params.normalize or params.lowercase:
        return None
    table = bytearray(range(256))
    for rule in params.replacements:
        if rule.regex or not (len(rule.old) == len(rule.new) == 1 and rule.old.isascii() and rule.new.isascii()):
            return None
        # Later replacements apply to the output of earlier ones: compose the maps.
        table = bytearray(ord(rule.new) if b == ord(rule.old) else b for b in table)
    return bytes(table)


def clean_utf8(chunks: Iterable[bytes], table: bytes, max_chars: int | None) -> Iterator[bytes]:
    """`clean` on UTF-8 chunks with a table from `ascii_translation`; decodes only what truncation needs."""
    changed = [(bytes([old]), bytes([new])) for old, new in enumerate(table) if old != new]
    # A few bytes, none mapped to another changed byte (the book's rules): replacing them one after the other
    # is the same map, and replace runs on memchr, 1.6x faster than translate.
    by_replace = len(changed) <= 3 and not {new for _, new in changed} & {old for old, _ in changed}
    budget = max_chars
    for data in chunks:
        if by_replace:
            for old, new in changed:
                data = data.replace(old, new)
        else:
            data = data.translate(table)
        if budget is not None:
            kept = data.decode("utf-8")[:budget]
            budget -= len(kept)
            data = kept.encode("utf-8")
        yield data
        if budget == 0:
            return


@dataclass(frozen=True)
class CleanedText:
    """The cleaned text's chunks as strings: the chunked clean of decoded text."""

    chunks: Iterator[str]


@dataclass(frozen=True)
class CleanedUtf8:
    """The cleaned text's chunks as UTF-8 (bytes or uint8 arrays): cleaning that mapped bytes."""

    chunks: Iterator[bytes] | Iterator[np.ndarray]


def clean_stream(
    text: TextReader, params: CleanParams, should_stop: Callable[[], bool] = lambda: False
) -> CleanedText | CleanedUtf8:
    """`clean` over a stored text by the fastest exact path: a byte map of its UTF-8 when cleaning is one (in
    compiled loops for a large text kept whole), else the chunked clean of its decoded chunks."""
    table = ascii_translation(params)
    if table is None:
        return CleanedText(clean_chunks(text.strings(), params, should_stop))
    if params.max_chars is None and text.compiled_pays:
        from tasks.utf8 import map_bytes  # numba: 0.35 s to load

        return CleanedUtf8(map_bytes(text.arrays(), table))
    return CleanedUtf8(clean_utf8((chunk.tobytes() for chunk in text.arrays()), table, params.max_chars))
