"""The dashboard with 1,050 live Pis: first render, update rate, page memory; with baselines.

A real bramble-server (tests/dashboard/live.py, on 127.0.0.1) holds the bigpi model with all
1,050 Pis registered; Debian's headless Chromium opens the page (selenium, the tests' own
helpers). Telemetry is fed into the server's ingest on its own event loop (the path an HTTP post
ends in; the HTTP side is bench/fleet's business), each sample with a new random CPU so every
sample changes its cell.

Figures, each with its baseline from the same run:
1. time to first render (navigation start to all cells painted, the page's own clock);
   baseline: the 4-Pi desk page.
2. the update rate the page sustains: cells repainted per second in the page (a
   MutationObserver on the map counts them) while every Pi posts every 5 s (210 samples/s, the
   reference cluster), every 1 s and every 0.25 s; and how long a change of all 1,050 Pis takes
   to show. Baseline: the page re-fetching and re-rendering the whole map per update (its own
   ``load()``, timed in the page), as cells per second.
3. page memory: JS heap used (CDP ``Performance.getMetrics``) after the first render and after
   the load phases; baseline: the desk page.

Run: ``.venv/bin/python bench/dashboard.py`` (about 2 minutes; needs apt chromium and
chromium-driver, pip selenium). ``--seconds`` sets each load phase, ``--json`` prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bramble.services.server.core import ClusterServer
from bramble.services.server.records import Sample

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "dashboard"))
live: Any = importlib.import_module("live")  # the tests' server and browser helpers

TICK = 0.05  # the feeder's step: it ingests what is due by then (an even rate)
COUNT_CHANGES = """
window.__bench = {n: 0};
new MutationObserver((records) => {
  for (const r of records) if (r.attributeName === "title") window.__bench.n++;
}).observe(document.getElementById("map"), {attributes: true, subtree: true,
                                            attributeFilter: ["title"]});
"""


def sample(mac: str, cpu: float | None = None) -> Sample:
    return Sample(
        mac=mac,
        ts=time.time(),
        cpu_percent=round(random.uniform(0, 95), 1) if cpu is None else cpu,  # noqa: S311
        mem_used_percent=40.0,
        mem_available_bytes=500_000_000,
        disk_used_percent=30.0,
        temp_c=50.0,
    )


async def register_all(server: ClusterServer) -> list[str]:
    macs = sorted(server.model)
    for mac in macs:
        node = server.model[mac]
        await server.register(
            mac=mac,
            ip=node.ip,
            hostname=node.name,
            agent_version="bench",
            agent_port=9,
            serial=None,
        )
        server.ingest(mac, [sample(mac)])
    return macs


async def feed(server: ClusterServer, macs: list[str], interval: float, seconds: float) -> int:
    """Every Pi one sample per ``interval``, spread evenly; the samples ingested."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    sent = 0
    while (now := loop.time()) < began + seconds:
        due = int(len(macs) * (now - began) / interval)
        for turn in range(sent, due):
            mac = macs[turn % len(macs)]
            server.ingest(mac, [sample(mac)])
        sent = max(sent, due)
        await asyncio.sleep(TICK)
    return sent


def page_metrics(driver: Any) -> dict[str, float]:
    """Chromium's own counters of the page (CDP Performance.getMetrics)."""
    driver.execute_cdp_cmd("Performance.enable", {})
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    return {m["name"]: float(m["value"]) for m in metrics}


def heap_mb(driver: Any) -> float:
    """JS heap in use after a garbage collection, MB."""
    driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    return page_metrics(driver)["JSHeapUsedSize"] / 1e6


def first_render(driver: Any, server: Any, cells: int) -> tuple[float, float]:
    """(seconds from navigation start to the map painted, heap MB), median of 3 loads after
    one that warms the browser up."""
    times = []
    for _ in range(4):
        live.open_page(driver, server)
        live.wait_for(
            driver,
            lambda d: len(d.find_elements("css selector", "#map .cell")) == cells,
            f"{cells} cells",
        )
        loaded = driver.execute_script(
            "return Number(document.body.dataset.loaded) - performance.timeOrigin"
        )
        times.append(float(loaded) / 1000)
    return statistics.median(times[1:]), heap_mb(driver)


def reload_time(driver: Any, rounds: int = 5) -> float:
    """Seconds of one full re-fetch and re-render of the map (the page's ``load()``)."""
    took = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        (async () => {
          const t0 = performance.now();
          for (let i = 0; i < arguments[0]; i++) await load();
          done((performance.now() - t0) / arguments[0]);
        })();
        """,
        rounds,
    )
    return float(took) / 1000


def load_phase(
    live_server: Any, driver: Any, macs: list[str], interval: float, seconds: float
) -> dict[str, float]:
    """Samples/s offered, cells repainted/s in the page, the page's main-thread busy share
    and its task time per repainted cell, over ``seconds``."""
    driver.execute_script("window.__bench.n = 0")
    busy = page_metrics(driver)["TaskDuration"]
    began = time.monotonic()
    sent = asyncio.run_coroutine_threadsafe(
        feed(live_server.running.server, macs, interval, seconds), live_server.loop
    ).result(seconds + 60)
    fed = time.monotonic() - began
    time.sleep(1.0)  # the stream's last tick reaches the page
    took = time.monotonic() - began
    busy = page_metrics(driver)["TaskDuration"] - busy
    painted = int(driver.execute_script("return window.__bench.n"))
    return {
        "offered_per_s": sent / fed,
        "painted_per_s": painted / fed,
        "page_busy_share": busy / took,
        "page_ms_per_cell": 1000 * busy / max(1, painted),
    }


def whole_fleet_change(live_server: Any, driver: Any, macs: list[str]) -> float:
    """Seconds until a new CPU figure on every Pi is shown in every cell (median of 5)."""
    took = []
    for mark in (99.1, 99.2, 99.3, 99.4, 99.5):

        async def everyone(cpu: float = mark) -> None:
            for mac in macs:
                live_server.running.server.ingest(mac, [sample(mac, cpu=cpu)])

        began = time.monotonic()
        asyncio.run_coroutine_threadsafe(everyone(), live_server.loop).result(30)
        shown = f"return document.querySelectorAll('#map .cell[title*=\"CPU {mark}%\"]').length"
        live.wait_for(
            driver,
            lambda d, script=shown: d.execute_script(script) == len(macs),
            "every cell shows the new figure",
            30.0,
        )
        took.append(time.monotonic() - began)
    return statistics.median(took)


def run(seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = {"load_average_start": os.getloadavg()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="brt-dashbench-") as tmp, live.chromium() as driver:
        for name in ("desk", "bigpi"):
            folder = Path(tmp) / name
            folder.mkdir()
            nodes = live.nodes_from_inventory(name, fill=True)
            for server in live.serve(live.config(folder, nodes)):
                macs = server.run(register_all(server.running.server))
                render, heap = first_render(driver, server, len(nodes))
                result[name] = {"cells": len(nodes), "first_render_s": render, "heap_mb": heap}
                result[name]["reload_s"] = reload_time(driver)
                if name != "bigpi":
                    continue
                driver.execute_script(COUNT_CHANGES)
                result[name]["phases"] = {
                    f"every {interval:g} s": load_phase(server, driver, macs, interval, seconds)
                    for interval in (5.0, 1.0, 0.25)
                }
                result[name]["whole_fleet_change_s"] = whole_fleet_change(server, driver, macs)
                result[name]["heap_after_mb"] = heap_mb(driver)
    result["load_average_end"] = os.getloadavg()[0]
    return result


def report(result: dict[str, Any]) -> None:
    big, desk = result["bigpi"], result["desk"]
    print(
        f"machine: {result['cpus']} CPUs, load average {result['load_average_start']:.1f} at the "
        f"start, {result['load_average_end']:.1f} at the end"
    )
    print("figure | measured (1,050 Pis) | baseline | ratio")
    print(
        f"first render, navigation to map painted | {big['first_render_s'] * 1000:.0f} ms | "
        f"{desk['first_render_s'] * 1000:.0f} ms (desk, 4 Pis) | "
        f"{big['first_render_s'] / desk['first_render_s']:.2f}"
    )
    print(
        f"full re-fetch and re-render (load()) | {big['reload_s'] * 1000:.0f} ms | "
        f"{desk['reload_s'] * 1000:.0f} ms (desk) | {big['reload_s'] / desk['reload_s']:.1f}"
    )
    per_cell = 1000 * big["reload_s"] / big["cells"]
    for name, phase in big["phases"].items():
        print(
            f"each Pi posting {name}: {phase['offered_per_s']:.0f} samples/s offered | "
            f"{phase['painted_per_s']:.0f} cells/s painted, page busy "
            f"{100 * phase['page_busy_share']:.0f}%, {phase['page_ms_per_cell']:.3f} ms per cell | "
            f"{per_cell:.3f} ms per cell by full re-render | "
            f"{phase['page_ms_per_cell'] / per_cell:.2f}"
        )
    print(f"a change of all 1,050 Pis shown in | {big['whole_fleet_change_s'] * 1000:.0f} ms | - |")
    print(
        f"JS heap used | {big['heap_mb']:.1f} MB (after the load phases {big['heap_after_mb']:.1f}"
        f" MB) | {desk['heap_mb']:.1f} MB (desk) | {big['heap_mb'] / desk['heap_mb']:.2f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each load phase")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if not live.have_chromium():
        print("needs apt packages chromium and chromium-driver", file=sys.stderr)
        return 1
    result = run(args.seconds)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
