"""``interleaf view``: the judge's and people's scores side by side, per turn and per dialogue, in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interleaf.datasets.intermt import import_intermt
from interleaf.datasets.viewer import render_run
from interleaf.run import layout
from interleaf.state import DialogueState, Score
from interleaf.storage.store import ObjectStore
from tests.datasets.chromium import CHROMIUM, Browser

from .judges import DATA


def judged_import(root: Path) -> Path:
    """The score fixture imported, then one turn and the dialogue of s2 scored by a judge."""
    import_intermt(DATA / "score.jsonl", root, images_root=DATA)
    store = ObjectStore(root)
    state = DialogueState.model_validate(store.get_json(layout.dialogue_key("s2")))
    state.nodes["v0.0"].scores = {"text_quality": Score(value=2, reason="judge: fine"),
                                  "context_coherence": Score(value=1, reason="judge: forgets")}
    state.dialogue_scores["v0.0.0"] = {"helpfulness": Score(value=2, reason="judge: helps")}
    store.put_json(layout.dialogue_key("s2"), state.model_dump(mode="json"))
    return root


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the Debian 'chromium' package at /usr/bin/chromium")
async def test_judge_and_people_side_by_side_in_chromium(tmp_path: Path) -> None:
    index = render_run(str(judged_import(tmp_path / "run")), tmp_path / "view")
    data = json.loads(index.read_text().split('id="run-data">', 1)[1].split("</script>", 1)[0])
    s2 = next(s for s in data["seeds"] if s["id"] == "s2")
    assert {h["dim"] for h in s2["nodes"][0]["human_scores"]} == {
        "local_image_text_consistency", "visual_perceptual_quality", "text_quality", "context_coherence"}
    async with Browser() as browser:
        page = await browser.page()
        try:
            for domain in ("Runtime", "Log", "Page"):
                await page.send(f"{domain}.enable")
            loaded = page.expect("Page.loadEventFired")
            await page.send("Page.navigate", url=index.as_uri())
            await loaded
            rows = await page.evaluate("""(() => {
                document.querySelector('#seeds button[data-seed="s2"]').click();
                document.querySelector('#tree .node[data-node="v0.0"]').click();
                return [...document.querySelectorAll('#turn table.compare tr[data-dim]')].map(r => [
                    r.dataset.dim, r.className, r.querySelector('.judge').innerText,
                    r.querySelector('.human').innerText]);
            })()""")
            assert ["text_quality", "agree", "2", "2"] in rows
            assert ["context_coherence", "differ", "1", "3"] in rows
            assert ["visual_perceptual_quality", "", "not judged", "2"] in rows
            whole = await page.evaluate("""(() => {
                document.querySelector('#tree .node[data-node="v0.0.0"]').click();
                const tables = document.querySelectorAll('#turn table.compare');
                return [tables.length, document.getElementById('turn').innerText];
            })()""")
            assert whole[0] == 2 and "Whole-dialogue scores: judge and people" in whole[1]
            assert "judge: helps" in whole[1]
            assert page.errors() == []
        finally:
            await page.close()
