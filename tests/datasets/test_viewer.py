"""The HTML report, loaded in headless Chromium: no console errors, images render, clicks work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from interleaf.datasets.viewer import render_run
from interleaf.state import DialogueState
from tests.datasets.chromium import CHROMIUM, Browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_report_is_self_contained(sample_run: tuple[Path, list[DialogueState]], tmp_path: Path) -> None:
    root, states = sample_run
    index = render_run(str(root), tmp_path / "report")
    page = index.read_text(encoding="utf-8")
    # Nothing is fetched from anywhere but the report folder.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script src" not in page and "<link rel=\"stylesheet\"" not in page
    found = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', page, re.S)
    assert found is not None
    data = json.loads(found[1])
    assert [s["id"] for s in data["seeds"]] == sorted(s.seed.id for s in states)
    srcs = {p["src"] for s in data["seeds"] for n in s["nodes"]
            for parts in (n["user"], n["assistant"], n["follow_up"]) if parts for p in parts if p["t"] == "image"}
    assert srcs and all((index.parent / s).is_file() for s in srcs)
    trip = next(s for s in data["seeds"] if s["id"] == "trip")
    pruned = next(n for n in trip["nodes"] if n["id"] == "v0.2")
    assert pruned["status"] == "pruned" and pruned["reason"] == "text_quality 0 < threshold 1"
    assert data["totals"]["calls"] == sum(len(p.calls) for s in states for n in s.nodes.values() for p in n.provenance)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the Debian 'chromium' package at /usr/bin/chromium")
async def test_report_in_headless_chromium(sample_run: tuple[Path, list[DialogueState]], tmp_path: Path) -> None:
    root, _ = sample_run
    index = render_run(str(root), tmp_path / "report")
    async with Browser() as browser:
        page = await browser.page()
        try:
            for domain in ("Runtime", "Log", "Page"):
                await page.send(f"{domain}.enable")
            await page.send("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1,
                            mobile=False)
            loaded = page.expect("Page.loadEventFired")
            await page.send("Page.navigate", url=index.as_uri())
            await loaded
            images = await page.evaluate("""new Promise(resolve => {
                const check = () => {
                  const imgs = [...document.images];
                  if (imgs.every(i => i.complete)) resolve(imgs.map(i => [i.getAttribute('src'), i.naturalWidth]));
                  else setTimeout(check, 50);
                };
                check();
            })""")
            assert images, "the first seed's selected turn shows images"
            assert all(width > 0 for _, width in images), images

            await page.evaluate("document.querySelector('#seeds button[data-seed=\"trip\"]').click()")
            # Pruned nodes carry their reason as a hover title, and are drawn greyed.
            pruned = await page.evaluate(
                "(() => { const b = document.querySelector('#tree .node.pruned');"
                " return [b.title, getComputedStyle(b).color]; })()")
            assert "pruned" in pruned[0] and "threshold" in pruned[0]

            # Clicking a node shows that node's turn.
            turn_text = await page.evaluate(
                "(() => { document.querySelector('#tree .node[data-node=\"v0.0.1\"]').click();"
                " const t = document.getElementById('turn'); return [t.dataset.node, t.innerText]; })()")
            assert turn_text[0] == "v0.0.1"
            assert "Camp anywhere." in turn_text[1] and "Nice. Can you mark the campsite" in turn_text[1]
            assert "text_quality" in turn_text[1]

            # Chosen and rejected sides of a pair are side by side.
            sides = await page.evaluate(
                "[...document.querySelectorAll('#pairs .pair')].map(p => [...p.querySelectorAll('.side')]"
                ".map(s => s.className))")
            assert ["side chosen", "side rejected"] in sides and ["side tie", "side tie"] in sides

            await page.evaluate("document.querySelector('#tree .node[data-node=\"v0.1.0\"]').click()")
            await page.evaluate("""new Promise(r => {
                const check = () => [...document.images].every(i => i.complete) ? r(true) : setTimeout(check, 50);
                check(); })""")
            await page.screenshot(ARTIFACTS / "viewer.png")
            assert page.errors() == []
        finally:
            await page.close()
    assert (ARTIFACTS / "viewer.png").stat().st_size > 10_000


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the Debian 'chromium' package at /usr/bin/chromium")
async def test_empty_run_page_says_why_in_chromium(tmp_path: Path) -> None:
    from interleaf.datasets.intermt import import_intermt

    (tmp_path / "none.json").write_text("[]")
    import_intermt(tmp_path / "none.json", tmp_path / "run")
    index = render_run(str(tmp_path / "run"), tmp_path / "report")
    async with Browser() as browser:
        page = await browser.page()
        try:
            for domain in ("Runtime", "Log", "Page"):
                await page.send(f"{domain}.enable")
            loaded = page.expect("Page.loadEventFired")
            await page.send("Page.navigate", url=index.as_uri())
            await loaded
            shown = await page.evaluate(
                "[document.getElementById('notice').innerText, document.getElementById('tree').innerText,"
                " getComputedStyle(document.getElementById('notice')).display]")
            assert "this run has no seeds" in shown[0] and "this run has no seeds" in shown[1]
            assert shown[2] != "none"
            assert page.errors() == []
        finally:
            await page.close()
