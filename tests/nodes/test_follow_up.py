"""follow_up: the user simulator writes the next question for each surviving branch."""

from pathlib import Path

from interleaf.nodes.follow_up import FollowUp, clean_question
from interleaf.state import Seed
from interleaf.storage.store import ObjectStore

from .fakes import FakeClient, FakeRuntime, fail, image_parts, make_node, put_png, text_of
from .trees import node, tree

SEED = Seed(id="s", prompt="p", situation="stepwise incremental tasks")


def follower(tmp_path: Path, client: FakeClient, **params) -> FollowUp:
    runtime = FakeRuntime({"user_sim": client}, ObjectStore(tmp_path / "store"), tmp_path)
    return make_node(FollowUp, params, runtime, ["user_sim"])


def test_clean_question() -> None:
    assert clean_question('User: "Can you zoom in?"') == "Can you zoom in?"
    assert clean_question("  [User] more please ") == "more please"


async def test_sets_follow_up_on_alive_nodes_of_the_turn(tmp_path: Path) -> None:
    client = FakeClient("user_sim", lambda m: "User: Could you edit image 1 to be blue?")
    f = follower(tmp_path, client)
    img = put_png(f.ctx.runtime.store)
    nodes = tree(node("v0.0", images=[img]), node("v0.0.0", images=[img]), node("v0.0.1", status="pruned"),
                 node("v0.0.2", follow_up="already asked"))
    out = await f.run(FollowUp.Input(seed=SEED, nodes=nodes, turn=1))
    assert list(out.nodes) == ["v0.0.0"]
    fu = out.nodes["v0.0.0"].follow_up
    assert fu is not None and fu.role == "user" and fu.text == "Could you edit image 1 to be blue?" and not fu.images
    request = client.requests[0]
    assert "stepwise incremental tasks" in request[0]["content"]
    assert image_parts(request) == 2 and "question for v0.0.0" in text_of(request)


async def test_attach_referenced_images(tmp_path: Path) -> None:
    client = FakeClient("user_sim", lambda m: "Please edit image 2 and image 9.")
    f = follower(tmp_path, client, attach_referenced_images=True)
    a, b = put_png(f.ctx.runtime.store), put_png(f.ctx.runtime.store, (0, 0, 255))
    out = await f.run(FollowUp.Input(seed=SEED, nodes=tree(node("v0.0", images=[a, b])), turn=0))
    fu = out.nodes["v0.0"].follow_up
    assert fu is not None and [i.sha256 for i in fu.images] == [b.sha256]


async def test_stop_token_and_failure_end_the_branch(tmp_path: Path) -> None:
    client = FakeClient("user_sim", ["[END]", fail("overloaded")])
    f = follower(tmp_path, client)
    out = await f.run(FollowUp.Input(seed=SEED, nodes=tree(node("v0.0"), node("v0.1")), turn=0))
    assert all(n.follow_up is None for n in out.nodes.values())
    assert sorted(n.tags["follow_up"] for n in out.nodes.values()) == ["error", "stopped"]
    assert any("overloaded" in note for n in out.nodes.values() for note in n.provenance[-1].notes)
