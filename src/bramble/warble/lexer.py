"""Warble text to tokens: names, numbers, strings, operators, with line and column."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bramble.warble.errors import WarbleSyntaxError


class Kind(Enum):
    NUMBER = "number"
    STRING = "string"
    NAME = "name"
    OP = "operator"
    HASHPI = "#pi"
    EOF = "end of text"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    """Operators in their ASCII form, names as written, strings without their quotes."""
    line: int
    column: int

    def describe(self) -> str:
        if self.kind is Kind.EOF:
            return "the end of the text"
        if self.kind is Kind.STRING:
            return "a string"
        if self.kind is Kind.NUMBER:
            return f"the number {self.text}"
        return f"'{self.text}'"


# Straight and typographic quotes: posts often turn " into “ ” (and ' into ‘ ’). An opening
# quote of one family is closed by any closing quote of the same family, since editors are
# not consistent about which curly quote they put where.
DOUBLE_OPEN = frozenset('"“”„')  # noqa: RUF001 - typographic quotes are the point
DOUBLE_CLOSE = frozenset('"“”')  # noqa: RUF001
SINGLE_OPEN = frozenset("'‘’‚")  # noqa: RUF001
SINGLE_CLOSE = frozenset("'‘’")  # noqa: RUF001
QUOTE_CLOSERS: dict[str, frozenset[str]] = {
    **dict.fromkeys(DOUBLE_OPEN, DOUBLE_CLOSE),
    **dict.fromkeys(SINGLE_OPEN, SINGLE_CLOSE),
}

# Characters that phones and post formatters substitute, read as their ASCII meaning.
TRANSLATED = {"\u2212": "-", "\u00d7": "*", "\u00f7": "/"}
# Invisible characters that may sneak into pasted text; read as white space.
INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")

# Longest first, so that "<=" wins over "<" and "++" over "+".
OPERATORS = (
    "++",
    "--",
    "+=",
    "-=",
    "*=",
    "/=",
    "<=",
    ">=",
    "==",
    "!=",
    "&&",
    "||",
    "+",
    "-",
    "*",
    "/",
    "<",
    ">",
    "=",
    "!",
    "(",
    ")",
    "{",
    "}",
    ";",
    ",",
    "²",
    "³",
)

_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_DIGITS = frozenset("0123456789")
_NAME_CHARS = _ASCII_LETTERS | _DIGITS


def show_char(ch: str) -> str:
    """A character as an error message shows it: itself if printable, else its code point."""
    if ch.isprintable() and not ch.isspace():
        return f"'{ch}'"
    return f"U+{ord(ch):04X}"


def is_space(ch: str) -> bool:
    return ch.isspace() or ch in INVISIBLE


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an EOF token.

    Raises WarbleSyntaxError (with the position) on a character that starts no token or on a
    string that is not closed before the end of its line.
    """
    tokens: list[Token] = []
    i = 0
    n = len(text)
    line = 1
    line_start = 0
    while i < n:
        ch = text[i]
        column = i - line_start + 1
        if ch == "\n":
            i += 1
            line += 1
            line_start = i
            continue
        if is_space(ch):
            i += 1
            continue
        if ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            start = i
            while i < n and text[i] in _DIGITS:
                i += 1
            if i < n and text[i] == ".":
                i += 1
                while i < n and text[i] in _DIGITS:
                    i += 1
            tokens.append(Token(Kind.NUMBER, text[start:i], line, column))
            continue
        if ch in _ASCII_LETTERS:
            start = i
            while i < n and text[i] in _NAME_CHARS:
                i += 1
            tokens.append(Token(Kind.NAME, text[start:i], line, column))
            continue
        closers = QUOTE_CLOSERS.get(ch)
        if closers is not None:
            start = i + 1
            i = start
            while i < n and text[i] not in closers and text[i] != "\n":
                i += 1
            if i >= n or text[i] == "\n":
                raise WarbleSyntaxError(
                    f"string not closed: the {ch} that opens it has no closing quote "
                    "on the same line",
                    line,
                    column,
                )
            tokens.append(Token(Kind.STRING, text[start:i], line, column))
            i += 1
            continue
        if ch == "#":
            if text[i + 1 : i + 3].lower() == "pi" and not (
                i + 3 < n and text[i + 3] in _NAME_CHARS
            ):
                tokens.append(Token(Kind.HASHPI, text[i : i + 3], line, column))
                i += 3
                continue
            raise WarbleSyntaxError("unexpected '#' (only #pi{ ... } may wrap a Warble)", line, column)
        translated = TRANSLATED.get(ch)
        if translated is not None:
            tokens.append(Token(Kind.OP, translated, line, column))
            i += 1
            continue
        for op in OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token(Kind.OP, op, line, column))
                i += len(op)
                break
        else:
            hint = ""
            if ch == ".":
                hint = " (Warble has no attributes; numbers are written 1.5)"
            raise WarbleSyntaxError(f"unexpected character {show_char(ch)}{hint}", line, column)
    tokens.append(Token(Kind.EOF, "", line, n - line_start + 1))
    return tokens
