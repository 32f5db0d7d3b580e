"""Node kinds for runner tests: a slow, deterministic step that logs each "model call" to a file.

``SlowCounter`` stands in for an MLLM node: it sleeps ``delay`` seconds, appends one line
``<seed id> <node name>`` to ``counter_file`` (so a test can count calls across processes,
including one killed with SIGKILL), and records a tree node whose text is a pure function
of the seed and the node name, with one ``ModelCall`` in its provenance, recorded in the run's ledger like a real call.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

from pydantic import BaseModel, ConfigDict

from interleaf.nodes.base import NodeIO, NodeKind
from interleaf.run.totals import record_call
from interleaf.state import Message, ModelCall, Provenance, Seed, TextPart, TreeNode


class CounterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    counter_file: str
    delay: float = 0.05
    fail_seed: str | None = None


class CounterInput(NodeIO):
    seed: Seed


class CounterOutput(NodeIO):
    nodes: dict[str, TreeNode]


class SlowCounter(NodeKind[CounterInput, CounterOutput, CounterParams]):
    kind = "slow_counter"
    Input = CounterInput
    Output = CounterOutput
    Params = CounterParams

    async def run(self, inp: CounterInput) -> CounterOutput:
        name = self.ctx.name
        await asyncio.sleep(self.params.delay)
        if inp.seed.id == self.params.fail_seed:
            raise RuntimeError(f"scripted failure for {inp.seed.id}")
        fd = os.open(self.params.counter_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{inp.seed.id} {name}\n".encode())
        finally:
            os.close(fd)
        call = ModelCall(model="counter", provider_model="counter/1", prompt_tokens=10, completion_tokens=5)
        record_call(call)  # as a model client does: the run counts what was "sent"
        digest = hashlib.sha256(f"{inp.seed.id}/{name}/{inp.seed.prompt}".encode()).hexdigest()[:12]
        node = TreeNode(
            id=f"{name}",
            user=Message.user(inp.seed.prompt),
            assistant=Message(role="assistant", parts=[TextPart(text=f"{name} answer {digest}")]),
            provenance=[Provenance(node=name, kind=self.kind, model="counter", calls=[call])],
        )
        return CounterOutput(nodes={node.id: node})
