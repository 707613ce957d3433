"""Find Warbles in the text of a post: ``#pi`` then ``{`` up to the matching ``}``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bramble.warble.lexer import QUOTE_CLOSERS

_START = re.compile(r"#pi\s*\{", re.IGNORECASE)
MAX_TEXT_CHARS = 100_000
MAX_WARBLES = 10
MAX_WARBLE_CHARS = 10_000


@dataclass(frozen=True)
class FoundWarble:
    source: str
    """From ``#pi`` to the matching ``}`` (or to the bound / end of text if unclosed)."""
    start: int
    end: int
    """Offsets in the text: ``text[start:end] == source``."""
    complete: bool
    """False if no matching ``}`` was found: running it reports where it is missing."""


def _matching_brace(text: str, opening: int, limit: int) -> int | None:
    """Offset just after the ``}`` matching the ``{`` at ``opening``, skipping strings and
    ``//`` comments as the lexer does; None if not found before ``limit``."""
    depth = 0
    i = opening
    while i < limit:
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif ch == "/" and text.startswith("//", i):
            newline = text.find("\n", i, limit)
            if newline < 0:
                return None
            i = newline
            continue
        else:
            closers = QUOTE_CLOSERS.get(ch)
            if closers is not None:
                j = i + 1
                while j < limit and text[j] not in closers and text[j] != "\n":
                    j += 1
                if j < limit and text[j] != "\n":
                    i = j  # skip the closed string; an unclosed one ends at the line
        i += 1
    return None


def extract_warbles(
    text: str,
    *,
    max_text_chars: int = MAX_TEXT_CHARS,
    max_warbles: int = MAX_WARBLES,
    max_warble_chars: int = MAX_WARBLE_CHARS,
) -> list[FoundWarble]:
    """Every ``#pi{ ... }`` in ``text`` (``#PI``/``#Pi`` too, space before ``{`` allowed).

    Braces nest, and braces inside strings (straight or typographic quotes) or ``//``
    comments do not count. Only the first ``max_text_chars`` of the text are read, at most
    ``max_warbles`` are returned, and a Warble longer than ``max_warble_chars`` is cut there
    and marked incomplete (running it then reports the missing ``}``).
    """
    text = text[:max_text_chars]
    found: list[FoundWarble] = []
    position = 0
    while len(found) < max_warbles:
        match = _START.search(text, position)
        if match is None:
            break
        start = match.start()
        limit = min(len(text), start + max_warble_chars)
        end = _matching_brace(text, match.end() - 1, limit)
        if end is None:
            found.append(FoundWarble(text[start:limit], start, limit, complete=False))
            position = limit
        else:
            found.append(FoundWarble(text[start:end], start, end, complete=True))
            position = end
    return found
