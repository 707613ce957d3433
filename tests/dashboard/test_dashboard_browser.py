"""The dashboard in a real headless Chromium: the map, live updates, Warbles, admin actions.

The page is served by a real bramble-server on 127.0.0.1; telemetry and registrations are
posted as agents post them, and the page must change without a reload.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from live import ADMIN, ROOT, fake_agent, open_page, wait_for

from bramble.services.server.dashboard import PowerResult, set_power_hook

pytestmark = pytest.mark.slow
ARTIFACTS = ROOT / "build" / "test-artifacts"


def cell(driver: Any, bank: int, slot: int) -> Any:
    return driver.find_element("id", f"cell-{bank}-{slot}")


def colour(driver: Any, bank: int, slot: int) -> str:
    return str(
        driver.execute_script(
            "return getComputedStyle(arguments[0]).backgroundColor", cell(driver, bank, slot)
        )
    )


def reddish(rgb: str) -> int:
    """Red minus green of a CSS ``rgb(r, g, b)``: above 0 for hot, below for cool."""
    red, green = (int(x) for x in rgb[rgb.index("(") + 1 :].split(",")[:2])
    return red - green


def test_bigpi_map_shows_every_pi_and_updates_live(browser, bigpi):
    began = time.monotonic()
    open_page(browser, bigpi)
    assert len(browser.find_elements("css selector", "#map .cell")) == 1050
    assert len(browser.find_elements("css selector", "#map .bank")) == 50
    assert browser.find_element("id", "total-slots").text.startswith("1050")
    render = time.monotonic() - began
    page_loaded = browser.execute_script("return document.body.dataset.loaded")
    assert page_loaded

    nodes = {(n.bank, n.slot): n for n in bigpi.running.server.model.values()}
    target = nodes[(7, 3)]
    assert cell(browser, 7, 3).get_attribute("data-state") == "off"
    bigpi.register(target.mac)
    bigpi.telemetry(target.mac, cpu=5.0, temp=40.0)
    wait_for(browser, lambda d: cell(d, 7, 3).get_attribute("data-state") == "up", "cell 7-3 up")
    assert browser.find_element("id", "total-up").text.startswith("1")

    browser.find_element("css selector", "#colour-by option[value=cpu]").click()
    assert reddish(colour(browser, 7, 3)) < 0, "5% CPU is green"
    bigpi.telemetry(target.mac, cpu=97.0, temp=80.0)
    wait_for(browser, lambda d: reddish(colour(d, 7, 3)) > 0, "the cell turns red with its CPU")
    assert browser.find_element("id", "live").text == "live"  # never reloaded

    cell(browser, 7, 3).click()
    details = browser.find_element("id", "details-body")
    wait_for(browser, lambda d: "pi-07-03" in details.text, "details of the clicked Pi")
    wait_for(browser, lambda d: d.find_elements("css selector", "#details-body polyline"), "plot")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-bigpi.png"))
    print(f"bigpi: first render {render:.2f} s")


def test_desk_page_has_no_secret_and_admin_actions_need_the_token(browser, desk):
    # no node is up: q's first Warble waits for one, the second stays queued behind it
    body = {"user": "q", "source": 'PRINT("1")'}
    ids = [desk.call("POST", "/api/v1/warbles", None, body)[1]["id"] for _ in range(2)]
    open_page(browser, desk)
    assert len(browser.find_elements("css selector", "#map .cell")) == 4
    source = browser.page_source
    assert ADMIN not in source
    wait_for(browser, lambda d: d.find_elements("id", f"warble-{ids[1]}"), "the queued Warble")
    assert not browser.find_elements("css selector", "#warbles button.cancel"), "no token"
    browser.find_element("css selector", "#power-form button[value=cycle]").click()
    status = browser.find_element("id", "power-status")
    wait_for(browser, lambda d: "refused" in status.text, "power refused without a token")
    assert "401" in status.text or "token" in status.text

    calls: list[tuple[int, str]] = []

    async def hook(group: int, action: str) -> PowerResult:
        calls.append((group, action))
        return PowerResult((1,), f"relay outlet {group} {action}")

    set_power_hook(desk.running.server, hook)
    token = browser.find_element("id", "token")
    token.send_keys(ADMIN)
    token.send_keys("\t")  # change event: kept in sessionStorage only
    browser.find_element("css selector", "#power-form button[value=cycle]").click()
    wait_for(browser, lambda d: "relay outlet 1 cycle" in status.text, "power done with the token")
    assert calls == [(1, "cycle")]
    queued = f"#warble-{ids[1]} button.cancel"
    wait_for(browser, lambda d: d.find_elements("css selector", queued), "a cancel button")
    # the first waits for an idle node: no agent has it yet, so it can be cancelled too
    assert browser.find_elements("css selector", f"#warble-{ids[0]} button.cancel")
    browser.find_element("css selector", queued).click()
    item = browser.find_element("id", f"warble-{ids[1]}")
    wait_for(browser, lambda d: "cancelled" in item.text, "the Warble shows as cancelled")
    assert desk.call("GET", f"/api/v1/jobs/{ids[1]}", ADMIN)[1]["state"] == "cancelled"
    wait_for(
        browser,
        lambda d: cell(d, 1, 2).get_attribute("data-state") == "booting",
        "the bank shows as booting after the power request",
    )
    events = browser.find_element("id", "events")
    wait_for(browser, lambda d: "power group 1 cycle" in events.text, "the power event, live")
    assert ADMIN not in browser.page_source


def test_warble_submitted_through_the_page_shows_its_output(browser, desk):
    runner, port = desk.run(fake_agent("3.14159265358979"))
    try:
        node = next(iter(desk.running.server.model.values()))
        desk.register(node.mac, port=port)
        desk.telemetry(node.mac, cpu=1.0)
        open_page(browser, desk)
        browser.find_element("id", "warble-user").send_keys("visitor")
        source = browser.find_element("id", "warble-source")
        source.clear()
        source.send_keys('#pi{PRINT("3.14159265358979")}')
        browser.find_element("css selector", "#warble-form button").click()
        warbles = browser.find_element("id", "warbles")
        wait_for(browser, lambda d: "3.14159265358979" in warbles.text, "the Warble's output")
        assert "done" in warbles.text
        board = browser.find_element("id", "leaderboard")
        wait_for(browser, lambda d: "visitor" in board.text, "the leaderboard lists the visitor")
    finally:
        desk.run(runner.cleanup())


def test_anonymous_visitor_is_told_to_give_the_token(browser, private):
    browser.get(private.url + "/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(private.url + "/")
    notice = browser.find_element("id", "notice")
    wait_for(browser, lambda d: "admin token" in notice.text, "the page asks for the token")
    assert not browser.find_elements("css selector", "#map .cell")
    assert private.call("GET", "/api/v1/cluster")[0] == 401
    assert private.call("GET", "/api/v1/stream")[0] == 401


def test_static_files_are_local_and_unknown_ones_404(desk):
    status, _ = desk.call("GET", "/static/nope.js")
    assert status == 404
    page = (Path(__file__).parents[2] / "src/bramble/services/server/static/index.html").read_text()
    assert "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page
