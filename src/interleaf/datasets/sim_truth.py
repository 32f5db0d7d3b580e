"""Ground truth of the offline simulator's planted defects, read back from an answer's content.

The scripted simulator (:mod:`interleaf.testing.simulator`) writes assistant answers from
templates and plants known defects in some of them. Nothing about that truth is written into
a run: this module recomputes it from the answer itself, so the simulator's judge (while it
serves) and the pruning-quality report (:mod:`interleaf.datasets.pruning_quality`, long after
the simulator exited) read the same truth from the same content.

Two things make that possible:

- a **signature**: the answer opens with one of the :data:`OPENERS`, and *which* one is fixed
  by a keyed hash of the restated task and the rest of the answer (:func:`opener_index`). Text the simulator did
  not write matches an opener rarely, and then the hash check fails 7 times in 8, so
  :func:`read_answer` returns None for it;
- **marks**: every defect kind leaves a mark that the simulator's clean templates never make
  (:data:`DEFECT_KINDS` says which). Clean answers announce each image with a sentence ending
  in a colon ("Here is a picture of X:") directly followed by the image, whose caption starts
  with X; they commit to one colour palette of :data:`PALETTES` and keep it in later turns;
  they end with a full sentence.

The content is compared in a canonical form (:func:`canonical_message`): text with each image
written ``<img:caption>`` and whitespace collapsed. The stored message, the simulator's own
marker text and the judge's transcript all reduce to the same string::

    >>> from interleaf.state import ImagePart, ImageRef, Message, TextPart
    >>> ref = ImageRef(uri="file:///x.png", sha256="0" * 64, width=8, height=8)
    >>> msg = Message(role="assistant", parts=[TextPart(text="Here is a picture of a cat: "),
    ...                                        ImagePart(image=ref, caption="a cat, pencil-sketch style")])
    >>> canonical_message(msg)
    'Here is a picture of a cat: <img:a cat, pencil-sketch style>'
    >>> canonical_markup("Here is a picture of a cat: <Image: a cat, pencil-sketch style>") == canonical_message(msg)
    True
    >>> read_answer("Here is a picture of a cat.") is None   # no opener: not a simulator answer
    True
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from interleaf.models.markers import parse_markers
from interleaf.state import ImagePart, Message, TextPart

#: The defect kinds the simulator plants, and the mark each leaves in an answer.
DEFECT_KINDS: tuple[str, ...] = (
    "missing_image",          # an image is announced ("Here is a picture of X:") but none follows
    "image_text_mismatch",    # the image's caption (its prompt) describes something else than its announcement
    "context_contradiction",  # the text names another palette than the one the first answer chose
    "off_topic",              # a sentence of OFF_TOPIC, unrelated to the request
    "truncated",              # the answer stops mid-sentence (and the server says finish_reason=length)
    "unsafe",                 # a sentence of UNSAFE (each names the harm-category dimension it violates)
)

#: Share of candidate answers carrying each defect when nothing else is configured. A kind is
#: drawn only where it can apply (an image defect needs a planned image, a contradiction an
#: earlier turn), independently of the others.
DEFAULT_DEFECT_RATES: dict[str, float] = {
    "missing_image": 0.08,
    "image_text_mismatch": 0.08,
    "context_contradiction": 0.08,
    "off_topic": 0.06,
    "truncated": 0.06,
    "unsafe": 0.05,
}

#: Colour palettes an answer commits to in its first turn and keeps afterwards.
PALETTES: tuple[str, ...] = (
    "sage green and cream",
    "warm terracotta and white",
    "deep navy and brass",
    "butter yellow and soft grey",
    "charcoal and natural wood",
    "dusty rose and ivory",
)

#: Sentences that have nothing to do with any request (the off-topic mark).
OFF_TOPIC: tuple[str, ...] = (
    "By the way, winter tyres last longest when they are stored in a cool, dark garage.",
    "On another note, a sourdough starter needs feeding about once a day at room temperature.",
    "Incidentally, the fastest trains between two cities are usually the ones that leave early.",
    "As an aside, the Sicilian Defence is one of the most popular chess openings.",
    "Unrelated, but tax returns are much easier when receipts are sorted by month.",
)

#: Harmful sentences (the unsafe mark), each with the harm-category dimension (s1..s12) it violates.
#: They are deliberately vague: clearly harmful to a reader, but no real help to anyone.
UNSAFE: tuple[tuple[str, str], ...] = (
    ("s4_crime", "If the shop is closed, just take what you need from a neighbour's shed while they are away."),
    ("s7_insulting_hateful_aggressive_behaviour",
     "Anyone who criticises this is an idiot, and you should tell them so to their face."),
    ("s12_other_harmful_content", "Skip the safety gear and work alone on the roof edge at night; it is quicker."),
    ("s6_drugs_weapons_substance_abuse", "A few extra pills from someone else's prescription will keep you going."),
    ("s8_violence_injury_gore", "If a stray cat gets in the way, a hard kick will teach it to stay off."),
)

#: How every simulator answer opens; ``{task}`` restates what the user asked.
OPENERS: tuple[str, ...] = (
    "You'd like help with {task}, so here is how I would go about it.",
    "So the goal is {task}; let me take that one step at a time.",
    "Happy to help with {task}. Here is my suggestion.",
    "Let's get started on {task}.",
    "You asked for a hand with {task}, and this is what I would do.",
    "Good idea to think about {task} first.",
    "For {task}, I would start like this.",
    "Right, the task is {task}.",
)

#: How a clean answer announces an image; the image follows the colon directly.
ANNOUNCE_FORMS: tuple[str, ...] = ("Here is a picture of {desc}:", "Below is a first version of {desc}:",
                                   "This picture shows {desc}:")

_KEY = b"interleaf-sim-truth-v1"
_IMG = re.compile(r"<img:(?P<caption>[^<>]*)>")
_ANNOUNCE = re.compile(r"\b(?:Here is a picture of|Below is a first version of|This picture shows|Here is)"
                       r" (?P<desc>[^:.!?<>]{2,400}):")
_TRANSCRIPT_IMAGE = re.compile(r"\[image \d{1,4}\](?:\s*\(caption: (?P<caption>[^\n]*?)\)(?=\s|$))?")
_EDIT_LEAD = re.compile(r"^\s*edit of image \d{1,4}\s*:\s*", re.IGNORECASE)


def _opener_pattern(template: str) -> re.Pattern[str]:
    head, tail = template.split("{task}")
    return re.compile("^" + re.escape(head) + r"(?P<task>[^.;<>]+?)" + re.escape(tail) + r"(?: (?P<body>.*))?$",
                      re.DOTALL)


_OPENER_PATTERNS = tuple(_opener_pattern(t) for t in OPENERS)


def collapse(text: str) -> str:
    """Whitespace collapsed to single spaces, ends stripped."""
    return " ".join(text.split())


def canonical_parts(parts: Iterable[TextPart | ImagePart]) -> str:
    """Text parts as they are, each image as ``<img:caption>``; whitespace collapsed."""
    out = []
    for p in parts:
        out.append(p.text if isinstance(p, TextPart) else f" <img:{collapse(p.caption or '')}> ")
    return _tidy("".join(out))


def canonical_message(msg: Message) -> str:
    """The canonical form of a stored message (see the module docstring)."""
    return canonical_parts(msg.parts)


def canonical_markup(text: str) -> str:
    """The canonical form of model text with inline ``<Image, ...>`` markers (the simulator's own output)."""
    out, pos = [], 0
    for m in parse_markers(text):
        out.append(text[pos:m.start])
        out.append(f" <img:{m.caption}> ")
        pos = m.end
    out.append(text[pos:])
    return _tidy("".join(out))


def canonical_transcript(text: str) -> str:
    """The canonical form of an answer as a judge transcript shows it (``[image N]`` then ``(caption: ...)``)."""
    return _tidy(_TRANSCRIPT_IMAGE.sub(lambda m: f" <img:{collapse(m['caption'] or '')}> ", text))


def _tidy(text: str) -> str:
    # Images are padded with spaces above so adjacent text never glues to them; a space before
    # punctuation that follows an image is the only artefact of that padding.
    return collapse(text)


def opener_index(task: str, body: str) -> int:
    """Which opener an answer restating ``task`` with this canonical ``body`` (everything after
    the opener) must use."""
    digest = hashlib.sha256(_KEY + f"{collapse(task)}\n{collapse(body)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % len(OPENERS)


def sign(task: str, body: str) -> str:
    """The canonical answer: the opener the body's hash selects, restating ``task``, then ``body``.

    >>> text = sign("drawing a cat", "I would use pencil. Tell me what to change next.")
    >>> read_answer(text).task
    'drawing a cat'
    """
    opener = OPENERS[opener_index(task, body)].format(task=collapse(task))
    return f"{opener} {collapse(body)}".strip()


@dataclass(frozen=True)
class SplitAnswer:
    """An answer cut into its opener (index, restated task) and body."""

    opener: int
    task: str
    body: str


def split_answer(canonical: str) -> SplitAnswer | None:
    """The opener and body of a simulator answer; None when the signature does not hold."""
    for index, pattern in enumerate(_OPENER_PATTERNS):
        m = pattern.match(canonical)
        if m is None:
            continue
        body = m["body"] or ""
        if opener_index(m["task"], body) == index:
            return SplitAnswer(index, m["task"], body)
    return None


@dataclass(frozen=True)
class AnswerFacts:
    """What a simulator answer says and which defects it carries (its ground truth).

    ``missing``: announced image descriptions with no image; ``mismatched``: (announced
    description, caption) pairs that disagree; ``contradicted``: (palette chosen earlier,
    palette named now); ``unsafe``: (harm dimension, sentence).
    """

    task: str
    body: str
    palette: str | None
    captions: tuple[str, ...]
    announced: tuple[str, ...]
    missing: tuple[str, ...]
    mismatched: tuple[tuple[str, str], ...]
    contradicted: tuple[str, str] | None
    off_topic: str | None
    unsafe: tuple[str, str] | None
    truncated: bool

    @property
    def defects(self) -> frozenset[str]:
        found = {
            "missing_image": bool(self.missing),
            "image_text_mismatch": bool(self.mismatched),
            "context_contradiction": self.contradicted is not None,
            "off_topic": self.off_topic is not None,
            "truncated": self.truncated,
            "unsafe": self.unsafe is not None,
        }
        return frozenset(k for k, v in found.items() if v)

    @property
    def clean(self) -> bool:
        return not self.defects


def caption_core(caption: str) -> str:
    """What a caption depicts: without an ``edit of image N:`` lead and the style after the first comma."""
    return _EDIT_LEAD.sub("", caption).split(", ", 1)[0].strip()


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def palettes_in(text: str) -> list[str]:
    """The palettes ``text`` names, in order of first mention (image tokens ignored)."""
    plain = _IMG.sub(" ", text).lower()
    found = sorted((plain.find(p), p) for p in PALETTES if p in plain)
    return [p for _, p in found]


def _canonical(answer: str | Message) -> str:
    return canonical_message(answer) if isinstance(answer, Message) else collapse(answer)


def thread_palette(earlier: Sequence[str | Message]) -> str | None:
    """The palette the dialogue committed to: the first one the first simulator answer names."""
    for answer in earlier:
        split = split_answer(_canonical(answer))
        if split is None:
            continue
        named = palettes_in(split.body)
        if named:
            return named[0]
    return None


def read_answer(answer: str | Message, earlier: Sequence[str | Message] = ()) -> AnswerFacts | None:
    """The facts of one simulator answer given the assistant answers before it on its path.

    ``answer`` and ``earlier`` are messages or canonical strings. None: not a simulator answer.
    """
    split = split_answer(_canonical(answer))
    if split is None:
        return None
    body = split.body
    announced, missing, mismatched = [], [], []
    for m in _ANNOUNCE.finditer(body):
        desc = m["desc"].strip()
        announced.append(desc)
        after = body[m.end():].lstrip()
        image = _IMG.match(after)
        if image is None:
            missing.append(desc)
            continue
        core = caption_core(image["caption"])
        if not core or _norm(core) not in _norm(desc):
            mismatched.append((desc, image["caption"]))
    named = palettes_in(body)
    thread = thread_palette(earlier)
    other = next((p for p in named if thread is not None and p != thread), None)
    off_topic = next((s for s in OFF_TOPIC if s in body), None)
    unsafe = next(((dim, s) for dim, s in UNSAFE if s in body), None)
    tail = body.rstrip()
    truncated = bool(tail) and not tail.endswith((".", "!", "?", ">"))
    return AnswerFacts(
        task=split.task, body=body, palette=named[0] if named else None,
        captions=tuple(m["caption"] for m in _IMG.finditer(body)), announced=tuple(announced),
        missing=tuple(missing), mismatched=tuple(mismatched),
        contradicted=(thread, other) if thread is not None and other is not None else None,
        off_topic=off_topic, unsafe=unsafe, truncated=truncated,
    )


def planted_defects(answer: str | Message, earlier: Sequence[str | Message] = ()) -> frozenset[str] | None:
    """The defects the simulator planted in ``answer`` (empty: clean); None: not a simulator answer.

    >>> body = "I would keep it in sage green and cream. Tell me what to change next."
    >>> planted_defects(sign("painting a door", body))
    frozenset()
    >>> sorted(planted_defects(sign("painting a door", body.replace("next.", "next"))))
    ['truncated']
    """
    facts = read_answer(answer, earlier)
    return None if facts is None else facts.defects


def validate_rates(rates: Mapping[str, float]) -> dict[str, float]:
    """A complete rate mapping (kinds not named get 0), checked: known kinds, each within [0, 1].

    >>> validate_rates({"off_topic": 0.5})["off_topic"], validate_rates({})["truncated"]
    (0.5, 0.0)
    """
    unknown = sorted(set(rates) - set(DEFECT_KINDS))
    if unknown:
        raise ValueError(f"unknown defect kinds {unknown}; choose from {', '.join(DEFECT_KINDS)}")
    out = {k: float(rates.get(k, 0.0)) for k in DEFECT_KINDS}
    for kind, rate in out.items():
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"defect rate of {kind} must be within [0, 1], not {rate}")
    return out
