"""The Warble syntax tree: plain immutable data, made only by the parser."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Node:
    line: int
    column: int


# Expressions


@dataclass(frozen=True, slots=True)
class Number(Node):
    text: str
    """Digits as written; turned into a number at the precision in force when evaluated."""


@dataclass(frozen=True, slots=True)
class String(Node):
    value: str


@dataclass(frozen=True, slots=True)
class Var(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    """The function's canonical (upper case) name."""
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    """``-``, ``+`` or ``!``."""
    operand: Expr


@dataclass(frozen=True, slots=True)
class Power(Node):
    """``x²`` or ``x³``."""

    operand: Expr
    exponent: int


@dataclass(frozen=True, slots=True)
class Chain(Node):
    """``a + b - c`` or ``a * b / c``: evaluated left to right, kept flat."""

    first: Expr
    rest: tuple[tuple[str, Expr, Node], ...]
    """(operator, operand, position of the operator)."""


@dataclass(frozen=True, slots=True)
class Compare(Node):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Logic(Node):
    """``a && b && c`` or ``a || b``: short-circuit, value 1 or 0."""

    op: str
    operands: tuple[Expr, ...]


Expr = Number | String | Var | Call | Unary | Power | Chain | Compare | Logic


# Statements


@dataclass(frozen=True, slots=True)
class Assign(Node):
    name: str
    op: str
    """``=``, ``+=``, ``-=``, ``*=`` or ``/=``."""
    value: Expr


@dataclass(frozen=True, slots=True)
class Update(Node):
    """``x++`` or ``x--``."""

    name: str
    op: str


@dataclass(frozen=True, slots=True)
class CallStmt(Node):
    call: Call


@dataclass(frozen=True, slots=True)
class While(Node):
    cond: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class For(Node):
    init: Stmt | None
    cond: Expr | None
    step: Stmt | None
    body: tuple[Stmt, ...]


@dataclass(frozen=True, slots=True)
class If(Node):
    cond: Expr
    then: tuple[Stmt, ...]
    otherwise: tuple[Stmt, ...]


Stmt = Assign | Update | CallStmt | While | For | If


@dataclass(frozen=True, slots=True)
class Program(Node):
    body: tuple[Stmt, ...]
    wrapped: bool
    """Whether the text was wrapped in ``#pi{ ... }``."""
