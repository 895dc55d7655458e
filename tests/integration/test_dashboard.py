"""The built-in dashboard in Debian's headless Chromium (driven by Playwright), against the
metrics service served by uvicorn on loopback, fed through the real broker."""

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright

from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from shared.events import AgentProfileChanged, AgentStatus, AgentStatusChanged, Channel, Priority
from shared.ids import derived_id
from tests.conftest import eventually, produce, serving
from tests.integration.scripted import Script, publish

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-output"
# What this machine's closed network needs of Chromium (no background calls home).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_TEAM = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def live_history(now):
    """Conversations of the last hours: answered and resolved ones, and two still waiting."""
    scripts = []
    for i, (frt, resolution) in enumerate([(40, 600), (90, 1800), (300, 5400), (20, 200)]):
        s = Script(Channel.CHAT, Priority.URGENT, t0=now - timedelta(hours=3 - i / 2))
        s.message(0).classified(0).assigned(5, "alice", HOSTILE_TEAM)
        scripts.append(s.replied(frt, "alice").resolved(resolution, "alice"))
    for channel, priority in ((Channel.TELEGRAM, Priority.HIGH), (Channel.EMAIL, Priority.LOW)):
        s = Script(channel, priority, t0=now - timedelta(minutes=7))
        scripts.append(s.message(0).classified(0))
    return scripts


def agent_events(now):
    profile = AgentProfileChanged(
        event_id=derived_id("dash", "alice", "profile"),
        occurred_at=now,
        agent_id="alice",
        name="Alice",
        team=HOSTILE_TEAM,
        capacity={"chat": 3, "email": 8},
    )
    online = AgentStatusChanged(
        event_id=derived_id("dash", "alice", "online"),
        occurred_at=now,
        agent_id="alice",
        status=AgentStatus.ONLINE,
    )
    return [("alice", e.model_dump_json().encode()) for e in (profile, online)]


@pytest.fixture(scope="module")
def chromium_path():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make system-deps` installs Debian's chromium")
    return CHROMIUM


async def test_dashboard_shows_queues_agents_percentiles_and_sla_as_charts(
    common, ids, broker, topics, chromium_path
):
    app = create_app(MetricsSettings(**common))
    now = datetime.now(UTC)
    async with serving(app) as base:
        policy = {"first_response_target_s": 60, "resolution_target_s": 3600}
        async with httpx.AsyncClient(base_url=base, headers=ids.as_ops) as client:
            assert (await client.put("/v1/sla-policies/urgent/*", json=policy)).is_success
            sent = await publish(broker, topics, live_history(now))
            await produce(broker.bootstrap, topics.agent_events, agent_events(now))

            async def applied():
                return app.state.consume_loop.applied >= sent + 2

            await eventually(applied, what="the history applied")
            page_itself = await client.get("/dashboard", headers={"Authorization": ""})
        assert page_itself.status_code == 200
        assert "script-src 'self'" in page_itself.headers["content-security-policy"]

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium_path, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1200, "height": 1400})
                errors = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{base}/dashboard#key={ids.ops}")
                await page.wait_for_selector("body[data-loaded=true]", timeout=15000)

                assert "key=" not in page.url  # the key leaves the address bar at once
                assert await page.text_content("#waiting") == "2"
                assert await page.text_content("#online") == "1 / 1"
                assert await page.text_content("#load") == "0 / 11"
                # First responses 20, 40, 90, 300 s: p90 (nearest rank) is 300 s = 5 min.
                assert await page.text_content("#frt90") == "5 min"
                # Against a 60 s target, 2 of 4 first responses made it.
                assert await page.text_content("#sla-frt") == "50%"
                assert await page.locator("#frt-chart path.p50").count() == 1
                assert await page.locator("#frt-chart circle.p90").count() >= 1
                assert await page.locator("#res-chart path.p90").count() == 1
                assert await page.locator("#sla-chart rect.sla").count() == 8
                queues = await page.locator("#queues tbody tr").all_inner_texts()
                assert len(queues) == 2 and any("telegram" in q for q in queues)
                # Text from the API is shown as text: nothing it carries runs.
                agents = await page.locator("#agents tbody").inner_text()
                assert HOSTILE_TEAM in agents
                assert await page.evaluate("window.pwned") is None
                assert errors == []

                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / "dashboard.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"\ndashboard screenshot: {shot}")

                stranger = await browser.new_page()
                await stranger.goto(f"{base}/dashboard")
                assert await stranger.is_visible("#login")
                await stranger.fill("#key", "sb_not-a-key")
                await stranger.click("button[type=submit]")
                await stranger.wait_for_function(
                    "document.getElementById('status').textContent.includes('refused')"
                )
            finally:
                await browser.close()
