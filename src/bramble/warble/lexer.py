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


# Straight and typographic quotes: posts often turn a straight double quote into curly ones
# (U+201C, U+201D), and the single quote into U+2018, U+2019. An opening quote of one family
# is closed by any closing quote of the same family, since editors are not consistent about
# which curly quote they put where. U+201E and U+201A are low (German-style) opening quotes.
DOUBLE_OPEN = frozenset('"\u201c\u201d\u201e')
DOUBLE_CLOSE = frozenset('"\u201c\u201d')
SINGLE_OPEN = frozenset("'\u2018\u2019\u201a")
SINGLE_CLOSE = frozenset("'\u2018\u2019")
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

_OPERATORS_BY_FIRST: dict[str, tuple[str, ...]] = {}
for _op in OPERATORS:
    _OPERATORS_BY_FIRST[_op[0]] = (*_OPERATORS_BY_FIRST.get(_op[0], ()), _op)

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
    return _Lexer(text).tokens()


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0

    def tokens(self) -> list[Token]:
        text = self.text
        n = len(text)
        tokens: list[Token] = []
        while self.i < n:
            ch = text[self.i]
            if ch == "\n":
                self.i += 1
                self.line += 1
                self.line_start = self.i
            elif is_space(ch):
                self.i += 1
            elif ch == "/" and text.startswith("//", self.i):
                end = text.find("\n", self.i)
                self.i = n if end < 0 else end
            else:
                tokens.append(self.token(ch))
        tokens.append(Token(Kind.EOF, "", self.line, n - self.line_start + 1))
        return tokens

    def token(self, ch: str) -> Token:
        text = self.text
        i = self.i
        column = i - self.line_start + 1
        if ch in _DIGITS or (ch == "." and text[i + 1 : i + 2] in _DIGITS):
            return self.number(column)
        if ch in _ASCII_LETTERS:
            end = i + 1
            while end < len(text) and text[end] in _NAME_CHARS:
                end += 1
            return self.emit(Kind.NAME, text[i:end], end, column)
        if ch in QUOTE_CLOSERS:
            return self.string(ch, column)
        if ch == "#":
            after = text[i + 3 : i + 4]
            if text[i + 1 : i + 3].lower() == "pi" and not (after and after in _NAME_CHARS):
                return self.emit(Kind.HASHPI, text[i : i + 3], i + 3, column)
            raise WarbleSyntaxError(
                "unexpected '#' (only #pi{ ... } may wrap a Warble)", self.line, column
            )
        translated = TRANSLATED.get(ch)
        if translated is not None:
            return self.emit(Kind.OP, translated, i + 1, column)
        for op in _OPERATORS_BY_FIRST.get(ch, ()):
            if text.startswith(op, i):
                return self.emit(Kind.OP, op, i + len(op), column)
        hint = " (Warble has no attributes; numbers are written 1.5)" if ch == "." else ""
        raise WarbleSyntaxError(f"unexpected character {show_char(ch)}{hint}", self.line, column)

    def emit(self, kind: Kind, value: str, end: int, column: int) -> Token:
        self.i = end
        return Token(kind, value, self.line, column)

    def number(self, column: int) -> Token:
        text = self.text
        start = end = self.i
        while end < len(text) and text[end] in _DIGITS:
            end += 1
        if end < len(text) and text[end] == ".":
            end += 1
            while end < len(text) and text[end] in _DIGITS:
                end += 1
        return self.emit(Kind.NUMBER, text[start:end], end, column)

    def string(self, quote: str, column: int) -> Token:
        text = self.text
        closers = QUOTE_CLOSERS[quote]
        start = end = self.i + 1
        while end < len(text) and text[end] not in closers and text[end] != "\n":
            end += 1
        if end >= len(text) or text[end] == "\n":
            raise WarbleSyntaxError(
                f"string not closed: the {quote} that opens it has no closing quote "
                "on the same line",
                self.line,
                column,
            )
        return self.emit(Kind.STRING, text[start:end], end + 1, column)
