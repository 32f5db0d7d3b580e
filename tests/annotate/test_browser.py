"""A pushed task opened in headless Chromium through Label Studio's own UI: text and every image
render, and an annotation made by clicking comes back through ``pull``."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from interleaf.run.reader import RunReader
from tests.annotate.conftest import cli, project_tasks, run_id
from tests.annotate.runs import write_image_run
from tests.datasets.chromium import CHROMIUM, Browser, Page
from tests.fixtures.label_studio import LabelStudioServer

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"HEADLESS CHROMIUM MISSING: {CHROMIUM} not found (apt-get install chromium)"
)

#: Score choices of the labeling interface (the interface's own radio buttons, not the data manager's).
CHOICES_JS = ("Array.from(document.querySelectorAll('input[type=radio]')).filter(r => { const l = r.closest('label');"
              " return l && /^-?[0-9]+( - |$)/.test(l.innerText.trim()); })")


async def _wait(page: Page, expression: str, what: str, timeout: float = 30.0) -> object:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; page errors: {page.errors()[:5]}")
        await asyncio.sleep(0.25)


async def _open(page: Page, url: str) -> None:
    loaded = page.expect("Page.loadEventFired")
    await page.send("Page.navigate", url=url)
    await asyncio.wait_for(loaded, 30)


async def test_task_renders_text_and_every_image_and_clicks_come_back(
    tmp_path: Path, ls: LabelStudioServer
) -> None:
    run, state = write_image_run(tmp_path / "images")
    assert cli("push", str(run)).exit_code == 0
    project, tasks = project_tasks(ls, f"{run_id(run)} turns")
    async with Browser() as browser:
        page = await browser.page()
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await _open(page, f"{ls.url}/user/login/")
        loaded = page.expect("Page.loadEventFired")
        await page.evaluate(f"""(() => {{
            document.querySelector('input[name=email]').value = {json.dumps(ls.email)};
            document.querySelector('input[name=password]').value = {json.dumps(ls.password)};
            document.querySelector('form').submit(); return true; }})()""")
        await asyncio.wait_for(loaded, 30)
        for node_id in ("v0.0", "v0.1"):
            node = state.nodes[node_id]
            task = tasks[("garden", node_id)]
            await _open(page, f"{ls.url}/projects/{project['id']}/data?task={task['id']}")
            expected = {ref.sha256 for m in (node.user, node.assistant) if m is not None for ref in m.images}
            shas = json.loads(str(await _wait(page, """(() => {
                const imgs = Array.from(document.querySelectorAll('img.il-image'));
                if (!imgs.length || !imgs.every(i => i.complete)) return '';
                return JSON.stringify(imgs.map(i => [i.dataset.sha256, i.naturalWidth, i.getAttribute('src')]));
            })()""", f"the images of task {task['id']}")))
            assert {s for s, _, _ in shas} == expected
            assert all(width == 64 for _, width, _ in shas), f"a broken image: {shas}"  # naturalWidth 0 when broken
            assert all(src.startswith("/data/upload/") for _, _, src in shas), shas
            # The labeling panel's rendering of the task (the data manager's table shows raw HTML);
            # it may draw its text after the images have loaded, so wait for it too.
            shown = str(await _wait(page, """(() => {
                const text = Array.from(document.querySelectorAll('.il-dialogue')).map(d => d.innerText).join('\\n');
                return text.trim() ? text : '';
            })()""", f"the labeling panel's text of task {task['id']}"))
            (tmp_path / f"task-{node_id}.txt").write_text(shown)
            assert node.user.text in shown
            for part in node.assistant.parts if node.assistant else []:
                if getattr(part, "text", "").strip():
                    assert part.text.strip() in shown  # escaped, not eaten: "<in winter> & summer"
            await page.screenshot(tmp_path / f"task-{node_id}.png")
        # Score the open task (v0.1) by clicking: 3 on the first dimension, 1 on the others, then Submit.
        await _wait(page, f"{CHOICES_JS}.length >= 16", "the score choices")
        await page.evaluate(f"""(() => {{ const rs = {CHOICES_JS};
            for (let g = 0; g < rs.length / 4; g++) rs[g * 4 + (g === 0 ? 0 : 2)].click(); return true; }})()""")
        await asyncio.sleep(0.3)
        await page.evaluate("""(() => { const b = Array.from(document.querySelectorAll('button'))
            .find(b => b.innerText.trim() === 'Submit'); b.click(); return true; })()""")
        with ls.api() as http:
            for _ in range(40):
                if http.get(f"/api/tasks/{tasks[('garden', 'v0.1')]['id']}/annotations/").json():
                    break
                await asyncio.sleep(0.25)
    pulled = cli("pull", str(run))
    assert pulled.exit_code == 0, pulled.output
    [garden] = RunReader.open(run).dialogues()
    got = {r.dimension: r.value for r in garden.nodes["v0.1"].human_scores}
    assert got == {"local_image_text_consistency": 3, "visual_perceptual_quality": 1, "text_quality": 1,
                   "context_coherence": 1}
