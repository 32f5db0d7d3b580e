"""Prompt truncation to the text encoder's token limit, with a note saying what was cut."""

from __future__ import annotations

import threading
from typing import Any

# Tokenizers report a huge sentinel when they have no limit of their own.
_NO_LIMIT = 1_000_000


class PromptFitter:
    """Truncates prompts to a tokenizer's ``model_max_length``; safe to share between threads.

    Holds its own tokenizer copy: a fast tokenizer used from two threads at once
    fails with "Already borrowed", and the pipeline's copy is busy in the worker thread.
    """

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        limit = int(getattr(tokenizer, "model_max_length", _NO_LIMIT) or _NO_LIMIT)
        self.limit: int | None = limit if limit < _NO_LIMIT else None

    def _count(self, text: str) -> int:
        return len(self._tokenizer(text, truncation=False, verbose=False)["input_ids"])

    def fit(self, prompt: str) -> tuple[str, str | None]:
        """``(prompt that fits, note or None)``; whole words are kept where possible."""
        if self.limit is None or not prompt:
            return prompt, None
        with self._lock:
            total = self._count(prompt)
            if total <= self.limit:
                return prompt, None
            words = prompt.split()
            low, high = 0, len(words)
            while low < high:
                mid = (low + high + 1) // 2
                if self._count(" ".join(words[:mid])) <= self.limit:
                    low = mid
                else:
                    high = mid - 1
            if low:
                kept = " ".join(words[:low])
            else:
                # One word longer than the limit: keep what the tokenizer itself keeps.
                ids = self._tokenizer(prompt, truncation=True, max_length=self.limit)["input_ids"]
                kept = self._tokenizer.decode(ids, skip_special_tokens=True)
        note = (
            f"prompt truncated to the text encoder's {self.limit}-token limit "
            f"({total} tokens given; kept {len(kept)} of {len(prompt)} characters)"
        )
        return kept, note
