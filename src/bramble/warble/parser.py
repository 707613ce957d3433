"""Tokens to a syntax tree by recursive descent; every error names its line and column.

Grammar (the full EBNF with explanations is in docs/warble.md)::

    warble     = "#pi" "{" program "}" | program ;
    program    = { statement | ";" } ;
    statement  = assign | update | call | while | for | if ;
    assign     = NAME ( "=" | "+=" | "-=" | "*=" | "/=" ) expression ;
    update     = NAME ( "++" | "--" ) ;
    while      = "WHILE" "(" expression ")" block ;
    for        = "FOR" "(" [ simple ] ";" [ expression ] ";" [ simple ] ")" block ;
    if         = "IF" "(" expression ")" block [ "ELSE" ( if | block ) ] ;
    block      = "{" program "}" ;
    expression = and { "||" and } ;
    and        = comparison { "&&" comparison } ;
    comparison = sum [ ( "<" | "<=" | ">" | ">=" | "==" | "!=" ) sum ] ;
    sum        = product { ( "+" | "-" ) product } ;
    product    = unary { ( "*" | "/" ) unary } ;
    unary      = ( "-" | "+" | "!" ) unary | power ;
    power      = primary { "²" | "³" } ;
    primary    = NUMBER | STRING | call | NAME | "(" expression ")" ;
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from bramble.warble import nodes as n
from bramble.warble.errors import WarbleLimitError, WarbleSyntaxError
from bramble.warble.functions import SIGNATURES
from bramble.warble.lexer import Kind, Token, tokenize
from bramble.warble.limits import Limits

KEYWORDS = frozenset({"WHILE", "FOR", "IF", "ELSE"})
ASSIGN_OPS = frozenset({"=", "+=", "-=", "*=", "/="})
UPDATE_OPS = frozenset({"++", "--"})
COMPARE_OPS = frozenset({"<", "<=", ">", ">=", "==", "!="})

_ExprParser = Callable[[], n.Expr]


def parse(text: str, limits: Limits | None = None) -> n.Program:
    """Parse a Warble, wrapped in ``#pi{ ... }`` or bare.

    Raises WarbleSyntaxError for text that is not a Warble, WarbleLimitError for text that is
    too long or nested too deeply.
    """
    limits = limits or Limits()
    if len(text) > limits.max_source_chars:
        line = text.count("\n", 0, limits.max_source_chars) + 1
        column = limits.max_source_chars - (text.rfind("\n", 0, limits.max_source_chars) + 1) + 1
        raise WarbleLimitError(
            f"the Warble is too long ({len(text):,} characters, limit {limits.max_source_chars:,})",
            line,
            column,
        )
    return _Parser(tokenize(text), limits.max_nesting).program()


def _at(token: Token) -> tuple[int, int]:
    return token.line, token.column


class _Parser:
    def __init__(self, tokens: list[Token], max_nesting: int) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.max_nesting = max_nesting

    # token helpers

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind is not Kind.EOF:
            self.pos += 1
        return token

    def at_op(self, *ops: str) -> bool:
        token = self.tokens[self.pos]
        return token.kind is Kind.OP and token.text in ops

    def error(self, message: str, token: Token) -> WarbleSyntaxError:
        return WarbleSyntaxError(message, token.line, token.column)

    def expect_op(self, op: str, after: str) -> Token:
        token = self.peek()
        if token.kind is Kind.OP and token.text == op:
            return self.advance()
        raise self.error(f"expected '{op}' {after}, found {token.describe()}", token)

    def expect_close(self, opener: Token, what: str = "") -> Token:
        closing = {"(": ")", "{": "}"}[opener.text]
        token = self.peek()
        if token.kind is Kind.OP and token.text == closing:
            return self.advance()
        of = f" of {what}" if what else ""
        raise self.error(
            f"missing '{closing}' to close the '{opener.text}'{of} at line {opener.line}, "
            f"column {opener.column}; found {token.describe()}",
            token,
        )

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > self.max_nesting:
            raise WarbleLimitError(
                f"nested too deeply (limit {self.max_nesting} levels)", token.line, token.column
            )

    def leave(self, levels: int = 1) -> None:
        self.depth -= levels

    # program and statements

    def program(self) -> n.Program:
        first = self.peek()
        if first.kind is Kind.HASHPI:
            self.advance()
            opener = self.expect_op("{", "after #pi")
            body = self.statements(opener, "#pi")
            self.expect_close(opener, "#pi")
            rest = self.peek()
            if rest.kind is not Kind.EOF:
                raise self.error("unexpected text after the '}' that ends #pi{ ... }", rest)
            return n.Program(first.line, first.column, body, wrapped=True)
        body = self.statements(None)
        return n.Program(first.line, first.column, body, wrapped=False)

    def statements(self, opener: Token | None, what: str = "") -> tuple[n.Stmt, ...]:
        """Statements up to the '}' matching ``opener`` (not consumed), or to the end."""
        body: list[n.Stmt] = []
        while True:
            token = self.peek()
            if token.kind is Kind.OP and token.text == ";":
                self.advance()
                continue
            if token.kind is Kind.EOF:
                if opener is not None:
                    self.expect_close(opener, what)
                return tuple(body)
            if token.kind is Kind.OP and token.text == "}":
                if opener is None:
                    raise self.error("unexpected '}' with no '{' to close", token)
                return tuple(body)
            body.append(self.statement())

    def statement(self) -> n.Stmt:
        token = self.peek()
        if token.kind is Kind.NAME:
            keyword = token.text.upper()
            if keyword == "WHILE":
                return self.while_statement()
            if keyword == "FOR":
                return self.for_statement()
            if keyword == "IF":
                return self.if_statement()
            if keyword == "ELSE":
                raise self.error("ELSE without IF", token)
            return self.simple_statement()
        if token.kind is Kind.HASHPI:
            raise self.error("#pi{ ... } can only wrap the whole Warble", token)
        if token.kind is Kind.OP and token.text == "{":
            raise self.error("a block { ... } can only follow WHILE, FOR, IF or ELSE", token)
        raise self.error(f"expected a statement, found {token.describe()}", token)

    def simple_statement(self) -> n.Stmt:
        """An assignment, ``x++``/``x--`` or a function call."""
        token = self.peek()
        if token.kind is not Kind.NAME or token.text.upper() in KEYWORDS:
            raise self.error(
                f"expected an assignment, ++, -- or a call, found {token.describe()}", token
            )
        following = self.peek(1)
        if following.kind is Kind.OP:
            if following.text == "(":
                call = self.call(in_expression=False)
                return n.CallStmt(token.line, token.column, call)
            if following.text in ASSIGN_OPS:
                self.advance()
                self.advance()
                value = self.expression()
                return n.Assign(token.line, token.column, token.text, following.text, value)
            if following.text in UPDATE_OPS:
                self.advance()
                self.advance()
                return n.Update(token.line, token.column, token.text, following.text)
        raise self.error(
            f"after the name {token.text}, expected '=', '++', '--' or '(' but found "
            f"{following.describe()}",
            following,
        )

    def condition(self, keyword: Token) -> n.Expr:
        opener = self.expect_op("(", f"after {keyword.text.upper()}")
        self.enter(opener)
        cond = self.expression()
        self.expect_close(opener, keyword.text.upper())
        self.leave()
        return cond

    def block(self, keyword: Token) -> tuple[n.Stmt, ...]:
        opener = self.expect_op("{", f"to start the body of {keyword.text.upper()}")
        self.enter(opener)
        body = self.statements(opener, keyword.text.upper())
        self.expect_close(opener, keyword.text.upper())
        self.leave()
        return body

    def while_statement(self) -> n.While:
        keyword = self.advance()
        cond = self.condition(keyword)
        body = self.block(keyword)
        return n.While(keyword.line, keyword.column, cond, body)

    def for_statement(self) -> n.For:
        keyword = self.advance()
        opener = self.expect_op("(", "after FOR")
        self.enter(opener)
        init = None if self.at_op(";") else self.simple_statement()
        self.expect_op(";", "after the start of FOR (FOR(start; test; step))")
        cond = None if self.at_op(";") else self.expression()
        self.expect_op(";", "after the test of FOR (FOR(start; test; step))")
        step = None if self.at_op(")") else self.simple_statement()
        self.expect_close(opener, "FOR")
        self.leave()
        body = self.block(keyword)
        return n.For(keyword.line, keyword.column, init, cond, step, body)

    def if_statement(self) -> n.If:
        keyword = self.advance()
        cond = self.condition(keyword)
        then = self.block(keyword)
        otherwise: tuple[n.Stmt, ...] = ()
        following = self.peek()
        if following.kind is Kind.NAME and following.text.upper() == "ELSE":
            self.advance()
            after = self.peek()
            if after.kind is Kind.NAME and after.text.upper() == "IF":
                self.enter(after)
                otherwise = (self.if_statement(),)
                self.leave()
            else:
                otherwise = self.block(following)
        return n.If(keyword.line, keyword.column, cond, then, otherwise)

    # expressions

    def expression(self) -> n.Expr:
        return self.logic("||", self.and_expression)

    def and_expression(self) -> n.Expr:
        return self.logic("&&", self.comparison)

    def logic(self, op: str, operand: _ExprParser) -> n.Expr:
        first = operand()
        if not self.at_op(op):
            return first
        token = self.peek()
        operands = [first]
        while self.at_op(op):
            self.advance()
            operands.append(operand())
        return n.Logic(token.line, token.column, op, tuple(operands))

    def comparison(self) -> n.Expr:
        left = self.sum()
        if not self.at_op(*COMPARE_OPS):
            return left
        token = self.advance()
        right = self.sum()
        if self.at_op(*COMPARE_OPS):
            raise self.error(
                "comparisons cannot be chained; join them with && (a < b && b < c)", self.peek()
            )
        return n.Compare(token.line, token.column, token.text, left, right)

    def sum(self) -> n.Expr:
        return self.chain(("+", "-"), self.product)

    def product(self) -> n.Expr:
        return self.chain(("*", "/"), self.unary)

    def chain(self, ops: tuple[str, ...], operand: _ExprParser) -> n.Expr:
        first = operand()
        rest: list[tuple[str, n.Expr, n.Node]] = []
        while self.at_op(*ops):
            token = self.advance()
            rest.append((token.text, operand(), n.Node(token.line, token.column)))
        if not rest:
            return first
        op_at = rest[0][2]
        return n.Chain(op_at.line, op_at.column, first, tuple(rest))

    def unary(self) -> n.Expr:
        if self.at_op("-", "+", "!"):
            token = self.advance()
            self.enter(token)
            operand = self.unary()
            self.leave()
            return n.Unary(token.line, token.column, token.text, operand)
        return self.power()

    def power(self) -> n.Expr:
        expr = self.primary()
        levels = 0
        while self.at_op("²", "³"):
            token = self.advance()
            self.enter(token)
            levels += 1
            expr = n.Power(token.line, token.column, expr, 2 if token.text == "²" else 3)
        self.leave(levels)
        return expr

    def primary(self) -> n.Expr:
        token = self.peek()
        if token.kind is Kind.NUMBER:
            self.advance()
            return n.Number(token.line, token.column, token.text)
        if token.kind is Kind.STRING:
            self.advance()
            return n.String(token.line, token.column, token.text)
        if token.kind is Kind.NAME:
            if token.text.upper() in KEYWORDS:
                raise self.error(f"{token.text.upper()} cannot be used in an expression", token)
            if self.peek(1).kind is Kind.OP and self.peek(1).text == "(":
                return self.call(in_expression=True)
            self.advance()
            return n.Var(token.line, token.column, token.text)
        if token.kind is Kind.OP and token.text == "(":
            self.advance()
            self.enter(token)
            expr = self.expression()
            self.expect_close(token)
            self.leave()
            return expr
        raise self.error(
            f"expected a number, a string, a name or '(', found {token.describe()}", token
        )

    def call(self, *, in_expression: bool) -> n.Call:
        name = self.advance()
        canonical = name.text.upper()
        signature = SIGNATURES.get(canonical)
        if signature is None:
            close = difflib.get_close_matches(canonical, list(SIGNATURES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise self.error(f"unknown function {name.text}{hint}", name)
        if in_expression and not signature.gives_value:
            raise self.error(f"{canonical} gives no value; use it as a statement", name)
        opener = self.advance()  # "(" (checked by the caller)
        self.enter(opener)
        args: list[n.Expr] = []
        if not self.at_op(")"):
            args.append(self.expression())
            while self.at_op(","):
                self.advance()
                args.append(self.expression())
        self.expect_close(opener, canonical)
        self.leave()
        if not signature.min_args <= len(args) <= signature.max_args:
            if signature.min_args == signature.max_args:
                wanted = f"{signature.min_args}"
            else:
                wanted = f"{signature.min_args} to {signature.max_args}"
            plural = "" if wanted == "1" else "s"
            raise self.error(
                f"{canonical} takes {wanted} argument{plural}, not {len(args)} ({signature.usage})",
                name,
            )
        return n.Call(name.line, name.column, canonical, tuple(args))
