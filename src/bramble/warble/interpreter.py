"""Run a Warble: its syntax tree compiled to Python closures over one Runtime.

Nothing of the Warble's text is ever evaluated as Python: names are keys of a dict, functions
are looked up in a fixed table, and every node becomes a closure built here.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from bramble.warble import nodes as n
from bramble.warble.effects import Effects, RecordingEffects
from bramble.warble.errors import (
    WarbleError,
    WarbleInternalError,
    WarbleLimitError,
    WarbleRuntimeError,
)
from bramble.warble.limits import Clock, Limits, SystemClock
from bramble.warble.numbers import LimitExceeded, Mpf, NumberError
from bramble.warble.parser import parse
from bramble.warble.result import RunResult
from bramble.warble.runtime import Runtime, Value
from bramble.warble.store import MemoryStore, Store

ExprFn = Callable[[], Value]
StmtFn = Callable[[], None]
BinaryFn = Callable[[Value, Value], Value]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def run(
    source: str,
    *,
    limits: Limits | None = None,
    user: str = "local",
    store: Store | None = None,
    effects: Effects | None = None,
    clock: Clock | None = None,
    on_output: Callable[[str], None] | None = None,
) -> RunResult:
    """Parse and run ``source`` in this process, within ``limits``; never raises for a
    Warble's sake: problems come back as ``RunResult.error``.

    Structural bounds (steps, time, output, precision, sizes) are enforced here; memory and
    a hard kill need ``run_isolated``.
    """
    limits = limits or Limits()
    runtime = Runtime(
        limits,
        user=user,
        store=store if store is not None else MemoryStore(),
        effects=effects if effects is not None else RecordingEffects(),
        clock=clock or SystemClock(),
        on_output=on_output,
    )
    error: WarbleError | None = None
    try:
        program = parse(source, limits)
        compile_program(program, runtime)()
    except WarbleError as exc:
        error = exc
    except RecursionError:
        error = WarbleLimitError("the Warble is nested too deeply to run")
    except MemoryError:
        error = WarbleLimitError("out of memory")
    except Exception as exc:  # a defect of ours: report it without a traceback
        error = WarbleInternalError(f"internal error ({type(exc).__name__})")
    return RunResult(
        lines=runtime.lines, error=error, steps=runtime.steps, seconds=runtime.elapsed()
    )


def compile_program(program: n.Program, runtime: Runtime) -> StmtFn:
    return _Compiler(runtime).block(program.body)


def _pos(node: n.Node) -> tuple[int, int]:
    return node.line, node.column


def _number_error(exc: NumberError, node: n.Node) -> WarbleError:
    kind = WarbleLimitError if isinstance(exc, LimitExceeded) else WarbleRuntimeError
    return kind(str(exc), *_pos(node))


class _Compiler:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.nums = runtime.nums

    # conditions

    def truthy(self, value: Value, node: n.Node) -> bool:
        if isinstance(value, str):
            raise WarbleRuntimeError("a condition must be a number, not a string", *_pos(node))
        return bool(value._mpf_[1])

    # statements

    def block(self, body: tuple[n.Stmt, ...]) -> StmtFn:
        fns = tuple(self.statement(stmt) for stmt in body)
        if len(fns) == 1:
            return fns[0]

        def run_block() -> None:
            for fn in fns:
                fn()

        return run_block

    def statement(self, node: n.Stmt) -> StmtFn:
        if isinstance(node, n.Assign):
            return self.assign(node)
        if isinstance(node, n.Update):
            return self.update(node)
        if isinstance(node, n.CallStmt):
            return self.call_statement(node)
        if isinstance(node, n.While):
            return self.while_loop(node)
        if isinstance(node, n.For):
            return self.for_loop(node)
        if isinstance(node, n.If):
            return self.if_statement(node)
        raise WarbleInternalError(f"unknown statement {type(node).__name__}", *_pos(node))

    def assign(self, node: n.Assign) -> StmtFn:
        step = self.rt.step
        variables = self.rt.vars
        name = node.name
        value = self.expression(node.value)
        if node.op == "=":

            def assign() -> None:
                step(node)
                variables[name] = value()

            return assign
        combine = self.binary(node.op[0], node)
        zero = self.nums.zero

        def update() -> None:
            step(node)
            variables[name] = combine(variables.get(name, zero), value())

        return update

    def update(self, node: n.Update) -> StmtFn:
        step = self.rt.step
        variables = self.rt.vars
        name = node.name
        nums = self.nums
        delta = nums.one if node.op == "++" else -nums.one

        def update() -> None:
            step(node)
            current = variables.get(name, nums.zero)
            if isinstance(current, str):
                raise WarbleRuntimeError(f"{node.op} needs a number, not a string", *_pos(node))
            try:
                variables[name] = nums.check(current + delta)
            except NumberError as exc:
                raise _number_error(exc, node) from None

        return update

    def call_statement(self, node: n.CallStmt) -> StmtFn:
        step = self.rt.step
        call = self.rt.call
        name = node.call.name
        args = tuple(self.expression(arg) for arg in node.call.args)
        at = node.call

        def call_statement() -> None:
            step(node)
            call(name, [arg() for arg in args], at)

        return call_statement

    def while_loop(self, node: n.While) -> StmtFn:
        step = self.rt.step
        truthy = self.truthy
        cond = self.expression(node.cond)
        body = self.block(node.body)

        def while_loop() -> None:
            while True:
                step(node)
                if not truthy(cond(), node):
                    return
                body()

        return while_loop

    def for_loop(self, node: n.For) -> StmtFn:
        step = self.rt.step
        truthy = self.truthy
        init = self.statement(node.init) if node.init is not None else None
        cond = self.expression(node.cond) if node.cond is not None else None
        advance = self.statement(node.step) if node.step is not None else None
        body = self.block(node.body)

        def for_loop() -> None:
            if init is not None:
                init()
            while True:
                step(node)
                if cond is not None and not truthy(cond(), node):
                    return
                body()
                if advance is not None:
                    advance()

        return for_loop

    def if_statement(self, node: n.If) -> StmtFn:
        step = self.rt.step
        truthy = self.truthy
        cond = self.expression(node.cond)
        then = self.block(node.then)
        otherwise = self.block(node.otherwise)

        def if_statement() -> None:
            step(node)
            if truthy(cond(), node):
                then()
            else:
                otherwise()

        return if_statement

    # expressions

    def expression(self, node: n.Expr) -> ExprFn:  # noqa: PLR0911 - one branch per kind
        if isinstance(node, n.Number):
            return self.number(node)
        if isinstance(node, n.String):
            value = node.value
            return lambda: value
        if isinstance(node, n.Var):
            variables = self.rt.vars
            name = node.name
            zero = self.nums.zero
            return lambda: variables.get(name, zero)
        if isinstance(node, n.Call):
            return self.call(node)
        if isinstance(node, n.Unary):
            return self.unary(node)
        if isinstance(node, n.Power):
            return self.power(node)
        if isinstance(node, n.Chain):
            return self.chain(node)
        if isinstance(node, n.Compare):
            return self.compare(node)
        if isinstance(node, n.Logic):
            return self.logic(node)
        raise WarbleInternalError(f"unknown expression {type(node).__name__}", *_pos(node))

    def number(self, node: n.Number) -> ExprFn:
        literal = self.nums.literal
        text = node.text

        def number() -> Value:
            try:
                return literal(text)
            except NumberError as exc:
                raise _number_error(exc, node) from None

        return number

    def call(self, node: n.Call) -> ExprFn:
        call_value = self.rt.call_value
        name = node.name
        args = tuple(self.expression(arg) for arg in node.args)
        return lambda: call_value(name, [arg() for arg in args], node)

    def unary(self, node: n.Unary) -> ExprFn:
        operand = self.expression(node.operand)
        nums = self.nums
        if node.op == "!":
            truthy = self.truthy
            return lambda: nums.truth(not truthy(operand(), node))
        negate = node.op == "-"

        def unary() -> Value:
            value = operand()
            if isinstance(value, str):
                raise WarbleRuntimeError(
                    f"unary {node.op} needs a number, not a string", *_pos(node)
                )
            return -value if negate else value

        return unary

    def power(self, node: n.Power) -> ExprFn:
        operand = self.expression(node.operand)
        check = self.nums.check
        cube = node.exponent == 3
        symbol = "³" if cube else "²"

        def power() -> Value:
            value = operand()
            if isinstance(value, str):
                raise WarbleRuntimeError(f"{symbol} needs a number, not a string", *_pos(node))
            try:
                result = check(value * value)
                return check(result * value) if cube else result
            except NumberError as exc:
                raise _number_error(exc, node) from None

        return power

    def binary(self, op: str, at: n.Node) -> BinaryFn:
        rt = self.rt
        nums = self.nums
        check = nums.check
        limit = self.rt.limits.max_string_chars

        def numbers(a: Value, b: Value) -> tuple[Mpf, Mpf]:
            if isinstance(a, str) or isinstance(b, str):
                raise WarbleRuntimeError(f"'{op}' needs numbers (only + joins strings)", *_pos(at))
            return a, b

        if op == "+":

            def add(a: Value, b: Value) -> Value:
                if isinstance(a, str) or isinstance(b, str):
                    left = a if isinstance(a, str) else nums.format(a)
                    right = b if isinstance(b, str) else nums.format(b)
                    if len(left) + len(right) > limit:
                        return rt.concat(left + right, at)
                    return left + right
                try:
                    return check(a + b)
                except NumberError as exc:
                    raise _number_error(exc, at) from None

            return add
        if op == "-":

            def subtract(a: Value, b: Value) -> Value:
                x, y = numbers(a, b)
                try:
                    return check(x - y)
                except NumberError as exc:
                    raise _number_error(exc, at) from None

            return subtract
        if op == "*":

            def multiply(a: Value, b: Value) -> Value:
                x, y = numbers(a, b)
                try:
                    return check(x * y)
                except NumberError as exc:
                    raise _number_error(exc, at) from None

            return multiply

        def divide(a: Value, b: Value) -> Value:
            x, y = numbers(a, b)
            if not y._mpf_[1]:
                raise WarbleRuntimeError("division by zero", *_pos(at))
            try:
                return check(x / y)
            except NumberError as exc:
                raise _number_error(exc, at) from None

        return divide

    def chain(self, node: n.Chain) -> ExprFn:
        first = self.expression(node.first)
        rest = tuple(
            (self.binary(op, at), self.expression(operand)) for op, operand, at in node.rest
        )
        if len(rest) == 1:
            ((combine, second),) = rest
            return lambda: combine(first(), second())

        def chain() -> Value:
            value = first()
            for combine, operand in rest:
                value = combine(value, operand())
            return value

        return chain

    def compare(self, node: n.Compare) -> ExprFn:
        left = self.expression(node.left)
        right = self.expression(node.right)
        test = _COMPARE[node.op]
        truth = self.nums.truth
        one = self.nums.one
        zero = self.nums.zero
        op = node.op

        def compare() -> Value:
            a = left()
            b = right()
            if isinstance(a, str) != isinstance(b, str):
                if op == "==":
                    return zero
                if op == "!=":
                    return one
                raise WarbleRuntimeError(
                    f"cannot compare a string with a number using {op}", *_pos(node)
                )
            return truth(test(a, b))

        return compare

    def logic(self, node: n.Logic) -> ExprFn:
        operands = tuple(self.expression(operand) for operand in node.operands)
        truthy = self.truthy
        one = self.nums.one
        zero = self.nums.zero
        if node.op == "&&":

            def all_true() -> Value:
                for operand in operands:
                    if not truthy(operand(), node):
                        return zero
                return one

            return all_true

        def any_true() -> Value:
            for operand in operands:
                if truthy(operand(), node):
                    return one
            return zero

        return any_true
