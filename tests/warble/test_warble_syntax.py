"""The grammar: what parses, what runs, and where syntax errors point."""

from __future__ import annotations

import re

import pytest

from bramble.warble import WarbleSyntaxError, parse
from bramble.warble import nodes as n
from bramble.warble.lexer import Kind, tokenize


def test_statements_need_no_separator_but_accept_semicolons(warble):
    assert warble("x=1y=2PRINT(x+y)").output == "3\n"
    assert warble(";;x=1;;;y=2;PRINT(x+y);;").output == "3\n"
    assert warble("x=1\ny=2\nPRINT(x+y)\n").output == "3\n"


def test_wrapper_is_optional_and_may_have_spaces(warble):
    assert warble("PRINT(1)").output == "1\n"
    assert warble("  #pi { PRINT(1) }  \n").output == "1\n"
    assert warble("#PI{PRINT(1)}").output == "1\n"
    assert parse("#pi{}").wrapped
    assert not parse("PRINT(1)").wrapped


def test_precedence_parentheses_unary_and_square(warble):
    program = "PRINT(1+2*3) PRINT((1+2)*3) PRINT(10-4-3) PRINT(8/4/2) PRINT(-2²) PRINT((-2)²)"
    assert warble(program).output == "7\n9\n3\n1\n-4\n4\n"
    assert warble("PRINT(2³) PRINT(2²²) PRINT(16.0²) PRINT(-(3)) PRINT(+3) PRINT(--x)").error
    assert warble("PRINT(2³) PRINT(2²²) PRINT(16.0²) PRINT(-(3)) PRINT(+3)").output == (
        "8\n16\n256\n-3\n3\n"
    )


def test_numbers_with_and_without_decimals(warble):
    assert warble("PRINT(5) PRINT(5.) PRINT(.5) PRINT(5.25) PRINT(007)").output == (
        "5\n5\n0.5\n5.25\n7\n"
    )


def test_comparisons_and_logic_give_one_or_zero(warble):
    program = (
        "PRINT(1<2, 2<1, 2<=2, 3>2, 2>=3, 1==1, 1!=1) "
        "PRINT(1<2 && 2<3, 1>2 || 2>3, !0, !5) "
        'PRINT("a"=="a", "a"==1, "a"!=1, "a"<"b")'
    )
    assert warble(program).output == "1 0 1 1 0 1 0\n1 0 1 0\n1 0 1 1\n"


def test_if_else_chain(warble):
    program = (
        'FOR(i=0;i<3;i++){ IF(i==0){PRINT("zero")} ELSE IF(i==1){PRINT("one")} '
        'ELSE {PRINT("many")} }'
    )
    assert warble(program).output == "zero\none\nmany\n"


def test_for_parts_are_optional(warble):
    assert warble("i=0 FOR(;i<3;){PRINT(i) i++}").output == "0\n1\n2\n"
    assert warble("FOR(;;){x++ IF(x>2){PRINT(x) SLEEP(100000)}}").error is not None


def test_compound_assignment_and_decrement(warble):
    assert warble("x=10 x+=5 x-=1 x*=2 x/=4 x-- PRINT(x)").output == "6\n"


def test_unset_variables_read_as_zero(warble):
    assert warble("PRINT(nothing) PRINT(y+1) z++ PRINT(z)").output == "0\n1\n1\n"


def test_variables_are_case_sensitive_keywords_and_functions_are_not(warble):
    program = "x=1 X=2 print(x, X) Print(Sqrt(16)) for(i=0;i<1;i++){PRINT(i)} while(0){}"
    assert warble(program).output == "1 2\n4\n0\n"
    assert warble("if(1){PRINT(1)}else{PRINT(2)}").output == "1\n"


def test_strings_in_every_quote_style_and_joined_with_plus(warble):
    program = (
        "PRINT(\"straight\") PRINT('single') PRINT(\u201ccurly\u201d) PRINT(\u2018curly\u2019) "
        'PRINT("it\u2019s") PRINT("pi is " + 3.14 + "!") PRINT(1 + 2 + "x")'
    )
    assert warble(program).output == (
        "straight\nsingle\ncurly\ncurly\nit\u2019s\npi is 3.14!\n3x\n"
    )


def test_comments_and_unicode_spacing(warble):
    program = "// counts\nx=1 // one\n\u00a0PRINT(x\u200b) PRINT(6\u22122, 2\u00d73, 6\u00f73)"
    assert warble(program).output == "1\n4 6 2\n"


def test_print_takes_several_values_or_none(warble):
    assert warble('PRINT() PRINT(1, "a", 2.5)').output == "\n1 a 2.5\n"


def test_parse_builds_the_expected_tree():
    program = parse("x=1+2*y")
    (stmt,) = program.body
    assert isinstance(stmt, n.Assign)
    assert stmt.name == "x"
    assert isinstance(stmt.value, n.Chain)
    assert stmt.value.rest[0][0] == "+"
    assert isinstance(stmt.value.rest[0][1], n.Chain)


def test_tokens_carry_line_and_column():
    tokens = tokenize('x = 1\n  PRINT("a")')
    assert [(t.kind, t.text, t.line, t.column) for t in tokens] == [
        (Kind.NAME, "x", 1, 1),
        (Kind.OP, "=", 1, 3),
        (Kind.NUMBER, "1", 1, 5),
        (Kind.NAME, "PRINT", 2, 3),
        (Kind.OP, "(", 2, 8),
        (Kind.STRING, "a", 2, 9),
        (Kind.OP, ")", 2, 12),
        (Kind.EOF, "", 2, 13),
    ]


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("PRINT(1", 1, 8, "missing ')' to close the '(' of PRINT at line 1, column 6"),
        ("x=(1+2", 1, 7, "missing ')' to close the '(' at line 1, column 3"),
        ("#pi{PRINT(1)", 1, 13, "missing '}' to close the '{' of #pi at line 1, column 4"),
        ("WHILE(1){\n  PRINT(1)\n", 3, 1, "missing '}' to close the '{' of WHILE"),
        ("x=1 }", 1, 5, "unexpected '}' with no '{' to close"),
        ('PRINT("abc)', 1, 7, "string not closed"),
        ("x = 1\ny = $", 2, 5, "unexpected character '$'"),
        ("FOO(1)", 1, 1, "unknown function FOO"),
        ("PRNT(1)", 1, 1, "unknown function PRNT (did you mean PRINT?)"),
        ("x=PRINT(1)", 1, 3, "PRINT gives no value; use it as a statement"),
        ("ROUND(1,2,3)", 1, 1, "ROUND takes 1 to 2 arguments, not 3"),
        ("SQRT()", 1, 1, "SQRT takes 1 argument, not 0"),
        ("x", 1, 2, "after the name x, expected '=', '++', '--' or '('"),
        ("1+2", 1, 1, "expected a statement, found the number 1"),
        ("x=", 1, 3, "expected a number, a string, a name or '(', found the end of the text"),
        ("ELSE{}", 1, 1, "ELSE without IF"),
        ("WHILE 1 {}", 1, 7, "expected '(' after WHILE"),
        ("IF(1) PRINT(1)", 1, 7, "expected '{' to start the body of IF"),
        ("FOR(i=0,i<3;i++){}", 1, 8, "expected ';' after the start of FOR"),
        ("x=1<2<3", 1, 6, "comparisons cannot be chained"),
        ("#pi{PRINT(1)} extra", 1, 15, "unexpected text after the '}' that ends #pi{ ... }"),
        ("PRINT(1) #pi{}", 1, 10, "#pi{ ... } can only wrap the whole Warble"),
        ("x=WHILE", 1, 3, "WHILE cannot be used in an expression"),
        ("{x=1}", 1, 1, "a block { ... } can only follow WHILE, FOR, IF or ELSE"),
        ("x=#", 1, 3, "unexpected '#'"),
    ],
)
def test_syntax_errors_name_line_and_column(source, line, column, message):
    with pytest.raises(WarbleSyntaxError) as caught:
        parse(source)
    error = caught.value
    assert message in error.message
    assert (error.line, error.column) == (line, column)
    assert re.fullmatch(rf"line {line}, column {column}: .+", str(error))


def test_a_number_may_not_have_two_points(warble):
    result = warble("x=1.2.3")
    assert result.error is not None
    assert result.error.kind == "syntax"
    assert str(result.error) == "line 1, column 6: expected a statement, found the number .3"


def test_syntax_error_runs_nothing(warble, effects):
    result = warble("LIGHTS(0,1,2,3) PRINT(1) PRINT(")
    assert result.output == ""
    assert effects.events == []
    assert result.steps == 0
