"""A node kind for flow tests: one countable "call" per dialogue, with injectable failures.

Each call is recorded in the run's ledger like a model call (one request; a failed one
with its error), and a call that succeeds answers with one tree node, so the dialogue is
complete (a seed is done only with a complete dialogue). Every call also appends
``start``/``end`` lines (seed id, wall time, pid) to ``log_file``, so a test can count
calls and measure how many dialogues overlapped - across threads and processes alike. A
file named after the seed id in ``fail_once_dir`` makes that seed's next call fail (the
file is consumed), which is how a shard is made to fail once.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from interleaf.nodes.base import NodeIO, NodeKind
from interleaf.run.totals import record_call
from interleaf.state import Message, ModelCall, Provenance, Seed, TextPart, TreeNode


class CountingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    log_file: str
    fail_once_dir: str | None = None
    sleep: float = Field(default=0.0, ge=0)


class CountingInput(NodeIO):
    seed: Seed


class CountingOutput(NodeIO):
    nodes: dict[str, TreeNode]
    records: dict[str, Any]


def _append(path: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic, so threads and processes can share the file.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class CountingAnswer(NodeKind[CountingInput, CountingOutput, CountingParams]):
    """Answers every seed with its prompt reversed, after logging the call."""

    kind = "tests_counting_answer"
    Input = CountingInput
    Output = CountingOutput
    Params = CountingParams

    async def run(self, inp: CountingInput) -> CountingOutput:
        seed_id = inp.seed.id
        _append(self.params.log_file, f"start {seed_id} {time.time():.6f} {os.getpid()}")
        try:
            await asyncio.sleep(self.params.sleep)
            if self.params.fail_once_dir:
                marker = Path(self.params.fail_once_dir) / seed_id
                if marker.exists():
                    marker.unlink()
                    record_call(ModelCall(model="counting", provider_model="counting/1", attempts=1,
                                          error="injected failure"))
                    raise RuntimeError(f"injected failure for seed {seed_id}")
        finally:
            _append(self.params.log_file, f"end {seed_id} {time.time():.6f} {os.getpid()}")
        text = inp.seed.prompt[::-1]
        call = ModelCall(model="counting", provider_model="counting/1", prompt_tokens=3, completion_tokens=2,
                         attempts=1)
        record_call(call)
        node = TreeNode(id="v0", user=Message.user(inp.seed.prompt),
                        assistant=Message(role="assistant", parts=[TextPart(text=text)]),
                        provenance=[Provenance(node="answer", kind=self.kind, model="counting", calls=[call])])
        return CountingOutput(nodes={node.id: node}, records={"answer": {"seed": seed_id, "text": text}})


class CallLog:
    """Reads a :class:`CountingAnswer` log file."""

    def __init__(self, path: Path):
        self.path = path

    def lines(self) -> list[tuple[str, str, float]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            what, seed_id, t, _pid = line.split()
            out.append((what, seed_id, float(t)))
        return out

    def calls(self) -> list[str]:
        """Seed ids in call order (one entry per call, retries included)."""
        return [seed_id for what, seed_id, _ in self.lines() if what == "start"]

    def max_overlap(self) -> int:
        """Most calls in flight at one moment."""
        events = sorted(((t, 1 if what == "start" else -1) for what, _, t in self.lines()), key=lambda e: (e[0], e[1]))
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        return peak
