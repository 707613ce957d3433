"""Warble throughput and BBP pi, each against plain Python doing the same in the same run.

Figures (all in CPU time, so that other jobs on a shared machine do not distort them):
1. Warbles per CPU second through parse + run (in process) for the examples of the Warble
   issue; baseline: the same examples hand-written in Python with mpmath.
2. CPU seconds to compute pi to 100 and 1,000 digits with a Bailey-Borwein-Plouffe Warble;
   baseline: the same BBP loop in Python with mpmath at the same precision.
3. CPU seconds (parent and child) for one ``run_isolated``, child start-up included;
   baseline: ``run`` in process.

SLEEP uses a manual clock here (the examples' SLEEP(20) would otherwise measure sleeping).
Run: ``.venv/bin/python bench/warble.py`` (about half a minute).
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import mpmath  # type: ignore[import-untyped]

from bramble.warble import Limits, ManualClock, MemoryStore, RecordingEffects, run, run_isolated

EXAMPLES = [
    '#pi{PRINT("hello cluster")}',
    "#pi{PRINT(2*ROUND(ACOS(0.0),3))}",
    "#pi{x=0PRINT(x)}",
    "#pi{i=0;WHILE(i<10){PRINT(i);i++}}",
    "#pi{FOR(i=0;i<10;i++){PRINT(i)}}",
    '#pi{SAVE("pi",1)}',
    '#pi{x=LOAD("pi");x++;SAVE("pi",x);PRINT(x)}',
    "#pi{LIGHTS(0,255,0,0)}",
    "#pi{LIGHTS(23,0,255,0)}",
    "#pi{LIGHTS(0,0,255,0);SLEEP(20);LIGHTS(0,0,255,0)}",
    "#pi{FOR(i=0;i<24;i++){LIGHTS(i,0,255,0)}SLEEP(20);FOR(i=0;i<24;i++){LIGHTS(i,0,0,255)}}",
    '#pi{PLAYSOUND("http://example.org/tardis.mp3");}',
    "#pi{x=1/16.0²*(4.0/(8*k+1)-2.0/(8*k+4)-1.0/(8*k+5)-1.0/(8*k+6))}",
]


def python_examples(ctx: Any, store: dict[str, Any], effects: RecordingEffects) -> list[str]:
    """The examples above, written directly in Python with mpmath (the baseline)."""
    out: list[str] = []
    ctx.dps = 15
    out.append("hello cluster")
    out.append(ctx.nstr(2 * ctx.mpf(round(float(ctx.acos(ctx.mpf("0.0"))), 3)), 15))
    x = ctx.mpf(0)
    out.append(ctx.nstr(x, 15))
    i = ctx.mpf(0)
    while i < 10:
        out.append(ctx.nstr(i, 15))
        i += 1
    i = ctx.mpf(0)
    while i < 10:
        out.append(ctx.nstr(i, 15))
        i += 1
    store["pi"] = ctx.mpf(1)
    x = store.get("pi", ctx.mpf(0)) + 1
    store["pi"] = x
    out.append(ctx.nstr(x, 15))
    effects.light(0, 255, 0, 0)
    effects.light(23, 0, 255, 0)
    effects.light(0, 0, 255, 0)
    effects.light(0, 0, 255, 0)
    for index in range(24):
        effects.light(index, 0, 255, 0)
    for index in range(24):
        effects.light(index, 0, 0, 255)
    effects.sound("http://example.org/tardis.mp3")
    k = ctx.mpf(0)
    x = (
        1
        / ctx.mpf("16.0") ** 2
        * (
            ctx.mpf("4.0") / (8 * k + 1)
            - ctx.mpf("2.0") / (8 * k + 4)
            - ctx.mpf("1.0") / (8 * k + 5)
            - ctx.mpf("1.0") / (8 * k + 6)
        )
    )
    return out


def bbp_terms(digits: int) -> int:
    return math.ceil(digits / math.log10(16)) + 3


def bbp_warble(digits: int) -> str:
    return (
        f"#pi{{SETPRECISION({digits + 10})\n"
        "s=0\n"
        f"FOR(k=0;k<{bbp_terms(digits)};k++){{\n"
        "  s=s+1/POW(16,k)*(4/(8*k+1)-2/(8*k+4)-1/(8*k+5)-1/(8*k+6))\n"
        "}\n"
        "PRINT(s)}"
    )


def bbp_python(digits: int) -> str:
    ctx = mpmath.MPContext()
    ctx.dps = digits + 10
    s = ctx.mpf(0)
    for k in range(bbp_terms(digits)):
        s += (
            1
            / ctx.power(16, k)
            * (
                ctx.mpf(4) / (8 * k + 1)
                - ctx.mpf(2) / (8 * k + 4)
                - ctx.mpf(1) / (8 * k + 5)
                - ctx.mpf(1) / (8 * k + 6)
            )
        )
    return str(ctx.nstr(s, ctx.dps))


def correct_digits(printed: str, digits: int) -> int:
    """Decimals of pi that ``printed`` gets right."""
    with mpmath.workdps(digits + 30):
        reference = str(mpmath.nstr(mpmath.pi, digits + 20))
    same = 0
    for ours, theirs in zip(printed, reference, strict=False):
        if ours != theirs:
            break
        same += 1
    return max(0, same - 2)  # not counting "3."


def cpu_with_children() -> float:
    """CPU seconds of this process and of its finished children (the isolated runs)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(
    action: Callable[[], object], budget: float, clock: Callable[[], float] = time.process_time
) -> tuple[float, int]:
    """Median seconds per call, over as many calls as fit in ``budget`` (at least 3).

    Figures are CPU seconds (of this process, and of the child processes for isolated runs),
    so that other jobs on a shared machine do not count.
    """
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < 3 or time.perf_counter() - started < budget:
        before = clock()
        action()
        samples.append(clock() - before)
    return statistics.median(samples), len(samples)


def report(name: str, figure: float, baseline: float, unit: str) -> None:
    print(f"{name}")
    print(f"  warble:   {figure:12.6g} {unit}")
    print(f"  baseline: {baseline:12.6g} {unit}")
    print(f"  ratio:    {figure / baseline:12.3g} (warble / baseline)")


def main() -> None:
    limits = Limits()

    def warble_examples() -> None:
        store = MemoryStore()
        effects = RecordingEffects()
        for source in EXAMPLES:
            result = run(source, limits=limits, store=store, effects=effects, clock=ManualClock())
            if result.error is not None:
                raise SystemExit(f"example failed: {source}: {result.error}")

    context = mpmath.MPContext()  # made once, as Warble does per thread

    def baseline_examples() -> None:
        python_examples(context, {}, RecordingEffects())

    per_set, sets = timed(warble_examples, 3.0)
    base_set, _ = timed(baseline_examples, 3.0)
    report(
        f"Issue examples through parse + run ({len(EXAMPLES)} Warbles a set, {sets} sets)",
        len(EXAMPLES) / per_set,
        len(EXAMPLES) / base_set,
        "Warbles per CPU second",
    )

    for digits in (100, 1_000):
        source = bbp_warble(digits)
        printed: list[str] = []

        def warble_bbp(source: str = source, printed: list[str] = printed) -> None:
            result = run(source, limits=limits)
            if result.error is not None:
                raise SystemExit(f"BBP failed: {result.error}")
            printed[:] = result.lines

        seconds, count = timed(warble_bbp, 4.0)

        def python_bbp(digits: int = digits) -> None:
            bbp_python(digits)

        base_seconds, _ = timed(python_bbp, 4.0)
        report(
            f"BBP pi to {digits:,} digits ({bbp_terms(digits)} terms, {count} runs; "
            f"{correct_digits(printed[0], digits):,} correct decimals, Python "
            f"{correct_digits(bbp_python(digits), digits):,})",
            seconds,
            base_seconds,
            "CPU s",
        )

    def isolated_run() -> None:
        run_isolated(EXAMPLES[0], limits=limits)

    def in_process_run() -> None:
        run(EXAMPLES[0], limits=limits)

    isolated, count = timed(isolated_run, 3.0, cpu_with_children)
    in_process, _ = timed(in_process_run, 1.0, cpu_with_children)
    report(
        f"One Warble in a resource-limited child process ({count} runs; baseline in process)",
        isolated,
        in_process,
        "CPU s",
    )


if __name__ == "__main__":
    main()
