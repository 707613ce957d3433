"""Finding Warbles in the text of posts."""

from __future__ import annotations

from bramble.warble import extract_warbles, run


def sources(text, **kwargs):
    return [found.source for found in extract_warbles(text, **kwargs)]


def test_one_warble_in_a_post():
    text = 'Look: #pi{PRINT("hello cluster")} neat!'
    (found,) = extract_warbles(text)
    assert found.source == '#pi{PRINT("hello cluster")}'
    assert text[found.start : found.end] == found.source
    assert found.complete
    assert run(found.source).output == "hello cluster\n"


def test_several_warbles_per_post():
    text = "#pi{PRINT(1)} and #PI{PRINT(2)} and #Pi {PRINT(3)}"
    assert sources(text) == ["#pi{PRINT(1)}", "#PI{PRINT(2)}", "#Pi {PRINT(3)}"]


def test_nested_braces_end_at_the_matching_one():
    text = "#pi{FOR(i=0;i<2;i++){IF(i){PRINT(i)}}} tail}"
    assert sources(text) == ["#pi{FOR(i=0;i<2;i++){IF(i){PRINT(i)}}}"]


def test_braces_in_strings_and_comments_do_not_count():
    text = "#pi{PRINT(\"}\") PRINT(\u201c{\u201d) // }\nPRINT('}')} after"
    assert sources(text) == ["#pi{PRINT(\"}\") PRINT(\u201c{\u201d) // }\nPRINT('}')}"]


def test_hashtag_without_brace_is_not_a_warble():
    assert sources("I love #pi and #pizza, #pie{x}") == []


def test_unclosed_warble_is_returned_incomplete_and_reports_the_brace():
    (found,) = extract_warbles("#pi{PRINT(1)")
    assert not found.complete
    result = run(found.source)
    assert "missing '}' to close the '{' of #pi" in str(result.error)


def test_unclosed_string_ends_at_the_line():
    text = '#pi{PRINT("oops)\n}'
    (found,) = extract_warbles(text)
    assert found.complete
    assert found.source == text


def test_published_unbalanced_example_is_found_whole():
    text = "#pi{x=1/16.0²*(4.0/(8*k+1)-2.0/(8*k+4)-1.0/(8*k+5)-1.0/(8*k+6)}"
    assert sources(f"try this {text}!") == [text]


def test_bounds():
    many = " ".join(f"#pi{{PRINT({i})}}" for i in range(50))
    assert len(sources(many)) == 10
    assert len(sources(many, max_warbles=3)) == 3
    long = "#pi{" + "x=1 " * 5000 + "}"
    (cut,) = extract_warbles(long, max_warble_chars=1000)
    assert not cut.complete
    assert len(cut.source) == 1000
    late = "a" * 200 + "#pi{PRINT(1)}"
    assert sources(late, max_text_chars=100) == []
