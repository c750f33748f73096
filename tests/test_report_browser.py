"""report.html in headless Chromium, driven over the DevTools protocol (aiohttp's websocket client, already
installed with litellm): every chart renders, a <script> payload in dataset text shows as text and never runs,
and the page requests nothing but itself and its inline data: images."""
from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest

from tests.test_report import PAYLOAD, payload_html, payload_run  # noqa: F401  (fixtures)

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0"]
PAGE_STATE_JS = """(() => ({
  images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
                                          height: i.naturalHeight})),
  pwned: window.__pwned === undefined ? null : window.__pwned,
  scripts: document.scripts.length,
  text: document.body.innerText,
}))()"""

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium (`make test` installs it)")


class DevTools:
    """The few DevTools protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.loaded = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                self.pending.pop(data["id"]).set_result(data)
                continue
            self.events.append(data)
            if data["method"] == "Page.loadEventFired":
                self.loaded.set()

    async def call(self, method: str, **params) -> dict:
        call_id = next(self.ids)
        self.pending[call_id] = asyncio.get_running_loop().create_future()
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        reply = await self.pending[call_id]
        assert "error" not in reply, reply
        return reply["result"]

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]


async def _devtools_port(proc) -> int:
    while True:
        line = (await proc.stderr.readline()).decode()
        if not line:
            raise RuntimeError("chromium exited before its DevTools endpoint was ready")
        if "DevTools listening on ws://" in line:
            return int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


async def open_in_chromium(path: Path, profile: Path) -> dict:
    import aiohttp

    proc = await asyncio.create_subprocess_exec(str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}",
                                                "about:blank", stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        port = await _devtools_port(proc)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as reply:
                page = next(t for t in await reply.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tools = DevTools(ws)
                for domain in ("Network", "Page", "Runtime"):
                    await tools.call(f"{domain}.enable")
                await tools.call("Page.navigate", url=path.resolve().as_uri())
                await tools.loaded.wait()
                state = await tools.call("Runtime.evaluate", expression=PAGE_STATE_JS, returnByValue=True)
                tools.reader.cancel()
                return {"state": state["result"]["value"], "urls": tools.requested_urls(),
                        "exceptions": [e for e in tools.events if e["method"] == "Runtime.exceptionThrown"]}
    finally:
        proc.kill()
        await proc.wait()


@pytest.fixture(scope="module")
def rendered(payload_run, payload_html, tmp_path_factory) -> dict:  # noqa: F811  (fixtures imported above)
    profile = tmp_path_factory.mktemp("chromium-profile")
    return asyncio.run(asyncio.wait_for(open_in_chromium(payload_run / "report.html", profile), timeout=120))


def test_every_chart_renders(rendered, payload_run):  # noqa: F811
    images = rendered["state"]["images"]
    charts = sorted((payload_run / "charts").glob("*.png"))
    assert len(images) == len(charts) >= 5
    for image in images:
        assert image["complete"] and image["width"] > 100 and image["height"] > 50, image


def test_script_payload_in_dataset_text_shows_as_text_and_never_runs(rendered):
    state = rendered["state"]
    assert state["pwned"] is None
    assert state["scripts"] == 0
    assert PAYLOAD in state["text"]  # the label and the item texts, shown literally
    assert not rendered["exceptions"]


def test_the_page_requests_nothing_from_the_network(rendered):
    urls = rendered["urls"]
    assert urls and urls[0].startswith("file://")
    assert all(url.startswith(("file://", "data:")) for url in urls), urls
