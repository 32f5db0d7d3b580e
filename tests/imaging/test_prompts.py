from interleaf.imaging.prompts import PromptFitter
from interleaf.testing.tiny_pipelines import TOKENIZER_MAX_LENGTH, build_tiny_tokenizer


def _count(text: str) -> int:
    return len(build_tiny_tokenizer()(text, truncation=False, verbose=False)["input_ids"])


def test_short_prompt_is_untouched() -> None:
    fitter = PromptFitter(build_tiny_tokenizer())
    assert fitter.fit("a red fox") == ("a red fox", None)


def test_long_prompt_is_cut_at_a_word_boundary_with_a_note() -> None:
    fitter = PromptFitter(build_tiny_tokenizer())
    prompt = " ".join(f"word{i}" for i in range(60))
    kept, note = fitter.fit(prompt)
    assert note is not None and f"{TOKENIZER_MAX_LENGTH}-token limit" in note
    assert prompt.startswith(kept) and kept != prompt
    assert _count(kept) <= TOKENIZER_MAX_LENGTH
    next_word = prompt[len(kept) :].split()[0]
    assert _count(kept + " " + next_word) > TOKENIZER_MAX_LENGTH


def test_one_giant_word_is_cut_by_tokens() -> None:
    fitter = PromptFitter(build_tiny_tokenizer())
    kept, note = fitter.fit("x" * 500)
    assert note is not None
    assert 0 < _count(kept) <= TOKENIZER_MAX_LENGTH


def test_tokenizer_without_a_limit_never_truncates() -> None:
    tokenizer = build_tiny_tokenizer()
    tokenizer.model_max_length = int(1e30)
    assert PromptFitter(tokenizer).fit("y " * 500) == ("y " * 500, None)
