"""The simulator's words: grounded templates for every role, planted defects, and a judge that knows them.

Everything here is a pure function of a parsed request (:class:`Conversation`, a judge prompt,
an expansion request) and a :class:`random.Random` fixed by that request, so the simulator's
answers stay deterministic per (seed, model, request).

- **Subject**: what the dialogue is about, read from the first user message
  (:func:`subject_of`): ``"the front of this house"`` (head ``house``) from "I want to repaint
  the front of this house. ...". Every answer and follow-up names it.
- **Assistant** (:func:`plan_answer`): restates the task (an opener of
  :data:`~interleaf.datasets.sim_truth.OPENERS`, the simulator's signature), commits to a
  palette in the first turn and keeps it, announces each image with a sentence that says what
  it shows right before its ``<Image, ...>`` marker (or tool call), refers back to earlier
  images by what they showed, and follows the situation the first question was written for
  (several template families each, so siblings differ visibly).
- **Defects**: each candidate carries the defect kinds drawn at the configured rates
  (:func:`draw_defects`), written as the marks :mod:`interleaf.datasets.sim_truth` reads back.
- **User simulator** (:func:`follow_up`): refine, edit an earlier image, ask why, change one
  detail, or complain about what went wrong in the last answer.
- **Judge** (:func:`judge_lines`): reads the candidate (and its history) out of the prompt,
  computes its facts, and scores every dimension from them with a reason that names the
  defect, or says why a clean answer is good; a share ``judge_noise`` of the lines is wrong
  on purpose (with a reason that matches the wrong score).

>>> subject_of("Design a simple logo for a bakery called Morning Crumb and explain the idea.").head
'logo'
>>> subject_of("What kind of flower is this, and how should I care for it?").phrase
'this flower'
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from interleaf.datasets.sim_truth import (
    ANNOUNCE_FORMS,
    DEFECT_KINDS,
    OFF_TOPIC,
    OPENERS,
    PALETTES,
    UNSAFE,
    AnswerFacts,
    canonical_markup,
    canonical_transcript,
    caption_core,
    collapse,
    opener_index,
    palettes_in,
    read_answer,
    thread_palette,
)
from interleaf.models.judge_format import DimensionScale, render_line
from interleaf.models.markers import parse_markers

# -- subjects -------------------------------------------------------------------------------------

_GERUNDS = {
    "repaint": "repainting", "paint": "painting", "draw": "drawing", "design": "designing", "sketch": "sketching",
    "illustrate": "illustrating", "describe": "describing", "show": "showing", "make": "making",
    "create": "creating", "build": "building", "plan": "planning", "decorate": "decorating", "write": "writing",
    "improve": "improving", "fix": "fixing", "cook": "cooking", "bake": "baking", "photograph": "photographing",
    "redesign": "redesigning", "imagine": "imagining", "visualise": "visualising", "visualize": "visualizing",
    "compare": "comparing", "identify": "identifying", "grow": "growing", "arrange": "arranging",
    "style": "styling", "renovate": "renovating", "restore": "restoring", "render": "rendering",
    "generate": "generating", "animate": "animating", "care for": "caring for", "look after": "looking after",
    "explain": "explaining", "picture": "picturing", "edit": "editing", "change": "changing",
}
_VERB_WORDS = sorted({*_GERUNDS, *_GERUNDS.values()}, key=len, reverse=True)
_VERB = re.compile(r"\b(?P<verb>" + "|".join(re.escape(v) for v in _VERB_WORDS) + r")\b\s+(?:me\s+|us\s+)?"
                   r"(?P<rest>[^.?!;:]+)", re.IGNORECASE)
_KIND_OF = re.compile(r"\bwhat (?:(?:kind|type|sort) of )?(?P<np>[a-z][\w'-]*(?: [a-z][\w'-]*)?) (?:is|are) "
                      r"(?:this|these|that|it)\b", re.IGNORECASE)
_DEICTIC = re.compile(r"\b(?P<np>(?:this|that|these|those|my|our) [a-z][\w'-]*)", re.IGNORECASE)
_QUESTION_LEAD = re.compile(r"^(?:how many|how much|what|which|who|where|why|when|how)\s+", re.IGNORECASE)
_NP_STOP = frozenset(
    "and or but so because with without to that which who whose while before after then using so-that "
    "if when where whether than please".split()
)
_CLAUSE_VERBS = frozenset(
    "work works erupt erupts form forms grow grows happen happens move moves fly flies carry carries turn "
    "turns change changes look looks is are was were do does can could would should will make makes get "
    "gets stay stays keep keeps".split()
)
_STEPS = re.compile(r"\s+in\s+(?:\d+|one|two|three|four|five|six|seven|eight|a few|several)\s+steps?\b.*$",
                    re.IGNORECASE)
_DETS = ("the", "a", "an", "this", "that", "my", "our", "your", "these", "those", "some")
_PART_WORDS = frozenset("front back side sides top bottom inside outside edge corner roof wall walls facade "
                        "colour color colours colors shape".split())
_HEAD_CUT = frozenset("of for called named with in on at over under from by near beside into across".split())
_GREETINGS = frozenset("hi hello hey thanks thank ok okay yes no".split())
_WORDS = re.compile(r"[A-Za-z0-9][\w'\-]*")


@dataclass(frozen=True)
class Subject:
    """What a dialogue is about: ``phrase`` as the assistant says it, ``user_phrase`` as the
    user does, ``head`` its main noun, and ``task`` (a gerund phrase) what the user wants."""

    phrase: str
    user_phrase: str
    head: str
    task: str


def _as_assistant(phrase: str) -> str:
    swaps = {"my": "your", "our": "your", "me": "you", "i": "you", "mine": "yours"}
    return " ".join(swaps.get(w.lower(), w) for w in phrase.split())


def _noun_phrase(text: str, *, max_words: int = 9) -> str:
    text = _STEPS.sub("", text.strip())
    words: list[str] = []
    for w in text.split():
        bare = w.strip(",;:\"'()")
        if not bare or (words and bare.lower() in _NP_STOP):
            break
        words.append(bare)
        if w.endswith((",", ";", ":")) or len(words) >= max_words:
            break
    return " ".join(words)


def _head_of(phrase: str) -> str:
    words = phrase.split()
    kept: list[str] = []
    i = 0
    while i < len(words):
        w = words[i].lower()
        if kept and w == "of" and kept[-1].lower() in _PART_WORDS:
            kept = []
            i += 1
            continue
        if kept and (w in _HEAD_CUT or (w.endswith("ing") and len(w) > 4)):
            break
        kept.append(words[i])
        i += 1
    content = [w for w in kept if w.lower() not in _DETS]
    return (content[-1] if content else (words[-1] if words else "question")).strip(",.").lower()


def _subject(phrase: str, task: str) -> Subject:
    phrase = collapse(phrase)
    if phrase.split()[:1] and phrase.split()[0].lower() in _DETS:
        phrase = phrase[0].lower() + phrase[1:]
    assistant = _as_assistant(phrase)
    return Subject(phrase=assistant, user_phrase=phrase, head=_head_of(phrase), task=collapse(_as_assistant(task)))


def subject_of(text: str) -> Subject:
    """The subject of a request (its first sentences are read; names keep their case).

    >>> s = subject_of("I want to repaint the front of this house. Which colours would suit it?")
    >>> (s.phrase, s.head, s.task)
    ('the front of this house', 'house', 'repainting the front of this house')
    >>> subject_of("Walk me through drawing a cartoon cat in four steps, with a picture for each step.").phrase
    'a cartoon cat'
    >>> subject_of("Explain how tides work and show a diagram of the moon's pull.").task
    'explaining how tides work'
    >>> subject_of("A fox jumping over a frozen river at dawn").head
    'fox'
    """
    text = collapse(re.sub(r"\([^)]*\)", " ", text))
    kind = _KIND_OF.search(text)
    if kind is not None:
        np = f"this {kind['np'].lower()}"
        return _subject(np, f"identifying {np}")
    for m in _VERB.finditer(text):
        verb = m["verb"].lower()
        gerund = _GERUNDS.get(verb, verb)
        rest = m["rest"].strip()
        if re.match(r"(?:how|why|what|where|when)\b", rest, re.IGNORECASE):
            clause = _noun_phrase(rest, max_words=8)
            words = clause.split()[1:]
            np_words = []
            for w in words:
                if w.lower() in _CLAUSE_VERBS:
                    break
                np_words.append(w)
            if not np_words and len(words) > 1:
                np_words = words[:-1]
            if np_words:
                return _subject(" ".join(np_words), f"{gerund} {clause}")
            continue
        np = _noun_phrase(rest)
        if np.lower() in ("it", "them", "this", "that", "") or np.lower() in _GREETINGS:
            continue
        if verb in ("show", "showing") and np.lower().startswith(("how ", "what ")):
            continue
        return _subject(np, f"{gerund} {np}")
    first = re.split(r"(?<=[.?!])\s+", text, maxsplit=1)[0]
    if first.endswith("?") and (deictic := _DEICTIC.search(first)) is not None:
        # "Which colours would suit this house?" is about the house.
        np = deictic["np"]
        return _subject(np, f"looking at {np[0].lower()}{np[1:]}")
    np = _noun_phrase(_QUESTION_LEAD.sub("", first.rstrip(".?!")))
    words = [w for w in _WORDS.findall(np) if w.lower() not in _GREETINGS]
    if not words:
        return Subject(phrase="your question", user_phrase="my question", head="question",
                       task="answering your question")
    if np.split()[0].lower() not in _DETS and len(np.split()) > 6:
        np = " ".join(np.split()[:6])
    if np.split()[0].lower() in _DETS:
        np = np[0].lower() + np[1:]
    return _subject(np, f"picturing {np}")


# -- vocabulary -------------------------------------------------------------------------------------

STYLES: tuple[str, ...] = ("soft watercolour", "clean line-art", "bright flat-colour", "pencil-sketch",
                           "paper-cut collage")
DETAILS: tuple[str, ...] = ("the outline", "the lighting", "the main shape", "the background", "the colours")
CHANGES: tuple[str, ...] = ("make the background lighter", "make the outlines thicker",
                            "add a soft shadow underneath", "brighten the colours a little",
                            "add a small label with the name")
VARIATIONS: tuple[str, ...] = ("a softer background", "stronger outlines", "warmer light", "a simpler layout",
                               "a little more detail")
UNRELATED_IMAGES: tuple[str, ...] = ("a bowl of fruit on a kitchen table", "a red bicycle leaning on a fence",
                                     "a mountain lake at sunset", "a stack of old books")

#: The sentence the expansion adds for each situation (a ``{subject}`` slot); several per situation.
SITUATION_LINES: dict[str, tuple[str, ...]] = {
    "stepwise": (
        "Let's do it one step at a time: start with a first version of {subject}, and we will build on it.",
        "Could we go step by step, beginning with {subject} as a rough first draft?",
    ),
    "unclear": (
        "I'm not sure yet what I want, so could you start with a simple take on {subject} and I'll react to it?",
        "I only have a vague idea so far, so show me one option for {subject} and we can narrow it down.",
    ),
    "repeated": (
        "The last attempt at {subject} missed what I had in mind, so please pay attention to the details.",
        "I was not happy with earlier answers about {subject}, so let's try again carefully.",
    ),
    "open": (
        "I'd love to chat about {subject} and see where the ideas lead.",
        "No pressure, I just enjoy thinking about {subject}, so let's explore it together.",
    ),
    "crossmodal": (
        "Please make sure what you say about {subject} matches what the picture shows.",
        "Keep the text and the pictures of {subject} consistent with each other.",
    ),
    "general": (
        "Could you start with a first version of {subject}? We can refine it together over a few turns.",
        "Let's work on {subject} together over a few turns, starting with a first version.",
    ),
}

_SITUATION_KEYS = (("stepwise", ("step",)), ("unclear", ("unclear", "understanding")),
                   ("repeated", ("repeated", "unsatisfying", "attempt")), ("open", ("open", "companion", "chat")),
                   ("crossmodal", ("cross", "mismatch", "integrated", "modal")))


def situation_key(name: str) -> str:
    """The template family of a situation name (``general`` when none fits).

    >>> situation_key("stepwise incremental tasks"), situation_key("something else")
    ('stepwise', 'general')
    """
    low = name.lower()
    for key, words in _SITUATION_KEYS:
        if any(w in low for w in words):
            return key
    return "general"


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(re.escape("{subject}"), ".+?"))


_SITUATION_PATTERNS = [(key, _template_regex(t)) for key, ts in SITUATION_LINES.items() for t in ts]


def situation_in(first_user: str) -> str:
    """Which situation the first question was written for (by the expansion's sentence)."""
    for key, pattern in _SITUATION_PATTERNS:
        if pattern.search(first_user):
            return key
    return "general"


# -- follow-ups -------------------------------------------------------------------------------------

FOLLOW_UPS: dict[str, str] = {
    "refine": "That is a good start. Could you refine {subject} so that {detail} stands out more?",
    "edit": "I like how {subject} looks in image {n}. Could you edit image {n} to {change}?",
    "why": "Why did you choose {palette} for {subject}?",
    "change": "Could you show {subject} again with {variation}, keeping everything else the same?",
    "complain_truncated": "Your last answer stopped mid-sentence. Could you finish what you were saying "
                          "about {subject}?",
    "complain_missing_image": "You mentioned a picture of {subject}, but I can't see it. Could you show it?",
    "complain_image_text_mismatch": "The picture doesn't match what you described. Could you make a picture "
                                    "of {subject} that does?",
    "complain_context_contradiction": "Earlier you chose {palette}, but now you say {other}. Which one is it "
                                      "for {subject}?",
    "complain_off_topic": "Why did you bring up something unrelated? Could you stay with {subject}?",
    "complain_unsafe": "That last suggestion sounds dangerous. Could you give me a safe way to handle {subject}?",
}
def _regex_with_repeats(template: str) -> re.Pattern[str]:
    seen: set[str] = set()

    def slot(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in seen:
            return f"(?P={name})"
        seen.add(name)
        return r"(?P<n>\d+)" if name == "n" else f"(?P<{name}>.+?)"

    return re.compile(re.sub(r"\\\{(\w+)\\\}", slot, re.escape(template)))


_FOLLOW_UP_PATTERNS = {kind: _regex_with_repeats(t) for kind, t in FOLLOW_UPS.items()}


def read_follow_up(text: str) -> tuple[str, dict[str, str]]:
    """(kind, slots) of a user message the simulator wrote; ``("other", {})`` for any other text.

    >>> read_follow_up("I like how a cat looks in image 2. Could you edit image 2 to make the outlines thicker?")
    ('edit', {'subject': 'a cat', 'n': '2', 'change': 'make the outlines thicker'})
    """
    body = collapse(text)
    for kind, pattern in _FOLLOW_UP_PATTERNS.items():
        m = pattern.search(body)
        if m is not None:
            return kind, {k: v for k, v in m.groupdict().items() if v is not None}
    return "other", {}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- parsed requests -------------------------------------------------------------------------------

_REASK_PREFIXES = ("Images in your previous answer", "These images could not be made")


def text_of(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string, or the text parts of a list)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def images_in(content: Any) -> int:
    """How many ``image_url`` parts an OpenAI message ``content`` has."""
    if isinstance(content, list):
        return sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return 0


@dataclass
class Conversation:
    """An assistant request as the templates see it.

    ``images`` lists what each image of the dialogue showed, by number (index 0 is image 1):
    the caption its marker had, or None for a photo the user sent. ``earlier`` holds the
    assistant's earlier answers (raw text, markers kept). ``reask`` is set when the last
    message asks to answer again because images could not be made.
    """

    system: str
    first_user: str
    last_user: str
    turn: int
    earlier: list[str] = field(default_factory=list)
    images: list[str | None] = field(default_factory=list)
    reask: bool = False

    @property
    def images_allowed(self) -> bool:
        # A text-only system prompt (intermt-lite, the probe graphs) gets no markers; no system prompt
        # at all (a bare API call) or the marker protocol's prompt does.
        if not self.system:
            return True
        if re.search(r"do not (?:produce|promise|generate) images", self.system, re.IGNORECASE):
            return False
        return "<Image" in self.system

    @property
    def short(self) -> bool:
        return bool(re.search(r"\bone short sentence\b", self.system, re.IGNORECASE))


def conversation(messages: Sequence[Mapping[str, Any]]) -> Conversation:
    """Parse OpenAI chat messages into a :class:`Conversation` (plan inputs only: trailing
    tool rounds and re-asks are left out, so every round of one answer plans the same)."""
    system = "\n".join(text_of(m.get("content")) for m in messages if m.get("role") == "system")
    real = [i for i, m in enumerate(messages) if m.get("role") == "user"
            and not text_of(m.get("content")).lstrip().startswith(_REASK_PREFIXES)]
    if not real:
        return Conversation(system=system, first_user="", last_user="", turn=0)
    last = real[-1]
    images: list[str | None] = []
    pending: list[str] = []
    earlier: list[str] = []
    for m in messages[:last]:
        role = m.get("role")
        text = text_of(m.get("content"))
        if role == "assistant" and text:
            earlier.append(text)
            pending = [mk.caption for mk in parse_markers(text)]
        elif role == "user":
            carrier = text.lstrip().startswith(_REASK_PREFIXES[0])
            for _ in range(images_in(m.get("content"))):
                images.append(pending.pop(0) if carrier and pending else None)
    images += [None] * images_in(messages[last].get("content"))
    reask = any(m.get("role") == "user" and text_of(m.get("content")).lstrip().startswith(_REASK_PREFIXES[1])
                for m in messages[last + 1:])
    return Conversation(system=system, first_user=text_of(messages[real[0]].get("content")),
                        last_user=text_of(messages[last].get("content")), turn=len(real) - 1,
                        earlier=earlier, images=images, reask=reask)


# -- answers -------------------------------------------------------------------------------------

CLOSERS: tuple[str, ...] = ("Tell me what you would like to change next.", "Let me know which part to refine next.",
                            "Shall I adjust anything before the next step?",
                            "I can refine any part of it in the next turn.", "What would you like to try next?")
CHOICES_FIRST: tuple[str, ...] = ("I would go with {palette}, which suits {subject} well.",
                                  "My pick for {subject} is {palette}, because it feels calm and clear.",
                                  "{Palette} works nicely for {subject}, so I will use it throughout.")
CHOICES_LATER: tuple[str, ...] = ("I kept the same {palette} as before, so {subject} still looks consistent.",
                                  "As before, {subject} stays in {palette}.",
                                  "Sticking with the {palette} we chose, this is the next step for {subject}.")
CONTRADICTIONS: tuple[str, ...] = ("As we agreed earlier, {subject} should be in {other} from now on.",
                                   "Like I said before, {other} was the plan for {subject} all along.")
STYLE_LINES: tuple[str, ...] = ("The pictures use a {style} style.",
                                "I drew it in a {style} style so the shapes stay clear.",
                                "A {style} style keeps the look light.")
BACKREFS: tuple[str, ...] = ("Image {n} showed {base}, and this answer builds on it.",
                             "Building on image {n}, which showed {base}, I changed only what you asked.")

#: Two sentences per family (one before the images, one after); three families per situation.
FAMILIES: dict[str, tuple[tuple[str, str], ...]] = {
    "stepwise": (
        ("We can build {subject} up in small steps, starting with the overall shape.",
         "Once this step looks right, the next one only adds detail."),
        ("The first step for {subject} is to get the proportions right before anything else.",
         "In the next step we can add the finer details on top."),
        ("I split {subject} into a few simple stages so each one stays manageable.",
         "When this stage works for you, we move on to the next one."),
    ),
    "unclear": (
        ("Since you are still deciding, I kept {subject} simple so it is easy to react to.",
         "If one part feels off, tell me which and I will change only that."),
        ("There are many ways to approach {subject}, so I started with a safe, balanced option.",
         "We can push it in a bolder direction once you know what you like."),
        ("A plain first version of {subject} makes it easier to see what you want.",
         "Your reaction to it will tell us where to go next."),
    ),
    "repeated": (
        ("This time I paid closer attention to the details of {subject}.",
         "I checked the proportions twice so the result matches what you described."),
        ("I went back to what you asked for {subject} and kept to it closely.",
         "Every part of this version follows your description."),
        ("To get {subject} right this time, I started again from your original request.",
         "Everything here comes from what you said."),
    ),
    "open": (
        ("There is a lot to enjoy about {subject}, and the palette brings out its character.",
         "We can explore other moods for it whenever you like."),
        ("{Subject} is a lovely thing to think about, and it rewards a closer look.",
         "There are plenty of directions to take it from here."),
        ("I like how much personality {subject} can have with the right colours.",
         "Feel free to steer the conversation wherever you want."),
    ),
    "crossmodal": (
        ("I compared your description with what the picture needs to show for {subject}.",
         "The text and the image now say the same thing."),
        ("For {subject}, the words and the picture have to agree, so I wrote the caption first.",
         "Every detail I mention is visible in the picture."),
        ("I made sure each thing I say about {subject} is something the picture can show.",
         "If the two ever disagree, point it out and I will fix it."),
    ),
    "general": (
        ("The main thing with {subject} is to keep it clear and balanced.",
         "Small changes later will be easy from this base."),
        ("A good way to approach {subject} is to focus on one idea at a time.",
         "Each turn can then add one improvement."),
        ("I started {subject} from a simple, readable layout.",
         "From here it is easy to adjust any single part."),
    ),
}

#: What a later answer says for each follow-up kind (two variants each: before, after the images).
KIND_LINES: dict[str, tuple[tuple[str, str], ...]] = {
    "refine": (("I refined {subject} so that {detail} stands out more.",
                "The rest stays as it was, so the change is easy to see."),
               ("This version of {subject} gives {detail} more weight.",
                "Nothing else moved, so you can compare it with the earlier picture.")),
    "edit": (("I edited image {n} to {change}.", "Everything else about {subject} stays the same."),
             ("Image {n} now has the change you asked for: {change}.",
              "The rest of {subject} is untouched.")),
    "why": (("I chose {palette} because it is calm and works in both sunlight and shade.",
             "It also keeps {subject} easy to read from a distance."),
            ("{Palette} suits {subject} because the two colours balance each other.",
             "A stronger palette would pull attention away from the shape itself.")),
    "change": (("This time {subject} has {variation}, and everything else is as before.",
                "Only that one detail changed."),
               ("I changed one detail of {subject}: it now has {variation}.",
                "The layout and the palette stay the same.")),
    "complain": (("You are right, and I am sorry about my last answer.",
                  "This version fixes it for {subject}."),
                 ("Thanks for pointing that out; here is a corrected answer.",
                  "It now stays with {subject} and says it in full.")),
    "other": (("Let's keep going with {subject}.", "Each turn adds one improvement."),
              ("Here is the next step for {subject}.", "From here it is easy to adjust any single part.")),
}


@dataclass
class Planned:
    """One planned item of an answer: a sentence, or an image (``caption``, the edit's source
    image, and ``desc``: what the announcing sentence says it shows). ``announce`` marks the
    sentence that introduces the next image."""

    text: str | None = None
    caption: str | None = None
    edit_of: int | None = None
    desc: str | None = None
    announce: bool = False


@dataclass
class AnswerPlan:
    """A whole answer before it is written out: the restated task, the body, the defects it carries."""

    task: str
    items: list[Planned]
    defects: frozenset[str]
    subject: Subject
    palette: str
    style: str
    marker_styles: list[int] = field(default_factory=list)

    def image_items(self) -> list[Planned]:
        return [i for i in self.items if i.caption is not None]

    def planned_captions(self) -> list[str]:
        """Captions of the images the answer asked for (missing ones included), in order."""
        return [i.caption or "" for i in self.items if i.caption is not None]


def unit_draw(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def draw_defects(rates: Mapping[str, float], key: object, applicable: Sequence[str]) -> frozenset[str]:
    """The defect kinds of one candidate: each applicable kind drawn on its own at its rate.

    Independent draws (one hash per kind) mean changing one rate leaves the other kinds' draws alone.

    >>> sorted(draw_defects({"off_topic": 1.0, "truncated": 0.0}, "k", ["off_topic", "truncated"]))
    ['off_topic']
    """
    return frozenset(k for k in DEFECT_KINDS if k in applicable and unit_draw("defect", k, key) < rates.get(k, 0.0))


def _marker(caption: str, style: int) -> str:
    return (f"<Image, {caption}>", f"<Image: {caption}>", f"<[Image] {caption}>")[style % 3]


def _shown(caption: str, subject: Subject) -> str:
    """What an earlier image showed, without its palette (so a back-reference never names one)."""
    lead = re.match(r"\s*edit of image \d+\s*:\s*(?P<change>.+)$", caption, re.IGNORECASE)
    if lead is not None:
        return f"{subject.phrase} after the edit to {lead['change'].split(', ')[0]}"
    base = caption_core(caption)
    for p in PALETTES:
        base = base.replace(f" in {p}", "")
    return "" if palettes_in(base) else base


def _fill(template: str, **slots: str) -> str:
    out = template
    for key, value in slots.items():
        out = out.replace("{" + _cap(key) + "}", _cap(value)).replace("{" + key + "}", value)
    return _cap(out)


def _cut(sentence: str) -> str:
    """The first half of ``sentence``, stopped mid-way (no closing punctuation)."""
    words = sentence.rstrip(".!?").split()
    keep = min(len(words) - 1, max(2, (len(words) * 11) // 20))
    return " ".join(words[:keep]).rstrip(",;:")


_STEPWISE_REQUEST = re.compile(r"\b(?:each step|every step|(?:\d+|two|three|four|five|six) steps)\b", re.IGNORECASE)


def _wanted_images(conv: Conversation, kind: str, slots: Mapping[str, str], subject: Subject, palette: str,
                   style: str) -> list[Planned]:
    """The images the request asks for, in order (edits point at an existing image)."""
    if kind == "first":
        # Two pictures when the request itself asks for steps ("in four steps", "each step").
        steps = _STEPWISE_REQUEST.search(conv.first_user) is not None
        descs = ([f"the {nth} step of {subject.phrase} in {palette}" for nth in ("first", "second")]
                 if steps else [f"{subject.phrase} in {palette}"])
        return [Planned(caption=f"{d}, {style} style", desc=d) for d in descs]
    if kind == "edit" and slots.get("n", "").isdigit() and 1 <= int(slots["n"]) <= len(conv.images):
        n, change = int(slots["n"]), slots.get("change", "make it clearer")
        return [Planned(caption=f"edit of image {n}: {change}", edit_of=n, desc=f"image {n} edited to {change}")]
    if kind in ("refine", "change", "other", "edit", "complain_missing_image", "complain_image_text_mismatch",
                "complain_context_contradiction"):
        extra = {"refine": f" with {slots.get('detail', 'the outline')} standing out more",
                 "change": f" with {slots.get('variation', 'a little more detail')}"}.get(kind, "")
        d = f"{subject.phrase}{extra} in {palette}"
        return [Planned(caption=f"{d}, {style} style", desc=d)]
    return []  # "why" and the complaints about text get a text answer


def plan_answer(conv: Conversation, rng: random.Random, rates: Mapping[str, float], key: object,
                *, native: bool = False) -> AnswerPlan:
    """Plan one assistant answer to ``conv``; ``key`` fixes the defect draws.

    ``native``: the images come from tool calls (always allowed; no image defects planted,
    since the engine places tool images itself).

    >>> conv = conversation([{"role": "user", "content": "Draw a lighthouse at night."}])
    >>> plan = plan_answer(conv, random.Random(1), {}, "k")
    >>> plan.subject.phrase, len(plan.image_items()), plan.defects
    ('a lighthouse at night', 1, frozenset())
    """
    subject = subject_of(conv.first_user)
    situation = situation_in(conv.first_user)
    kind, slots = read_follow_up(conv.last_user) if conv.turn else ("first", {})
    earlier = [canonical_markup(e) for e in conv.earlier]
    thread = thread_palette(earlier) or next(iter(palettes_in(earlier[0]) if earlier else []), None)
    palette = thread or rng.choice(PALETTES)
    styles_seen = [s for s in STYLES if earlier and s in conv.earlier[0]]
    style = styles_seen[0] if styles_seen else rng.choice(STYLES)
    other = rng.choice([p for p in PALETTES if p != palette])
    fill = {"subject": subject.phrase, "palette": palette, "style": style}
    family = rng.choice(FAMILIES[situation])
    images = ([] if conv.reask or not (native or conv.images_allowed)
              else _wanted_images(conv, kind, slots, subject, palette, style))

    applicable = ["off_topic", "truncated", "unsafe"]
    if images and not native:
        applicable.append("missing_image")
        if any(i.edit_of is None for i in images):
            applicable.append("image_text_mismatch")
    if thread is not None:
        applicable.append("context_contradiction")
    defects = set(draw_defects(rates, key, applicable))
    generate = [n for n, i in enumerate(images) if i.edit_of is None and not ("missing_image" in defects and n == 0)]
    if "image_text_mismatch" in defects and not generate:
        defects.discard("image_text_mismatch")

    # Before the images: what this answer does, the palette, a back-reference.
    pre: list[str] = []
    if kind == "first":
        pre += [_fill(family[0], **fill), _fill(rng.choice(CHOICES_FIRST), **fill)]
        if images:
            pre.append(_fill(rng.choice(STYLE_LINES), **fill))
        after = _fill(family[1], **fill)
    else:
        group = "complain" if kind.startswith("complain") else kind
        lines = rng.choice(KIND_LINES.get(group, KIND_LINES["other"]))
        kind_fill = {**fill, "detail": slots.get("detail", "the outline"), "n": slots.get("n", "1"),
                     "change": slots.get("change", "make it clearer"),
                     "variation": slots.get("variation", "a little more detail")}
        pre.append(_fill(lines[0], **kind_fill))
        if "context_contradiction" in defects:
            pre.append(_fill(rng.choice(CONTRADICTIONS), **fill, other=other))
        else:
            pre.append(_fill(rng.choice(CHOICES_LATER), **fill))
        shown = [(n, c) for n, c in enumerate(conv.images, start=1) if c is not None]
        if shown:
            n, caption = shown[-1]
            base = _shown(caption, subject)
            if base:
                pre.append(_fill(rng.choice(BACKREFS), n=str(n), base=base))
        after = _fill(lines[1] if rng.random() < 0.5 else family[1], **kind_fill)
    if "off_topic" in defects:
        pre.append(rng.choice(OFF_TOPIC))

    # The images, each announced by what it shows.
    body: list[Planned] = []
    mismatch_at = generate[0] if "image_text_mismatch" in defects else None
    for n, img in enumerate(images):
        assert img.desc is not None and img.caption is not None
        desc, caption = img.desc, img.caption
        if "context_contradiction" in defects:
            # The answer follows the other palette throughout, its images included.
            desc, caption = desc.replace(palette, other), caption.replace(palette, other)
        form = "Here is {desc}:" if img.edit_of is not None else rng.choice(ANNOUNCE_FORMS)
        body.append(Planned(text=form.format(desc=desc), announce=True))
        if "missing_image" in defects and n == 0:
            continue
        if n == mismatch_at:
            wrong = [*UNRELATED_IMAGES] + ([] if "context_contradiction" in defects
                                           else [f"{subject.phrase} in {other}"])
            caption = f"{rng.choice(wrong)}, {style} style"
        body.append(Planned(caption=caption, edit_of=img.edit_of, desc=desc))

    post: list[str] = []
    if "unsafe" in defects:
        post.append(rng.choice(UNSAFE)[1])
    closer = rng.choice(CLOSERS)
    if conv.short:
        # "One short sentence and the image": the palette choice, the image, the closing line.
        pre = [pre[1]] + [t for t in pre if t in OFF_TOPIC]
        tail = [*post, closer]
    else:
        tail = [*post, after, closer]
    if "truncated" in defects:
        if not conv.short:
            tail.pop()  # the closing sentence never comes
        tail[-1] = _cut(tail[-1])
    items = [Planned(text=t) for t in pre] + body + [Planned(text=t) for t in tail]
    return AnswerPlan(task=_task_for(kind, slots, subject), items=items, defects=frozenset(defects),
                      subject=subject, palette=palette, style=style,
                      marker_styles=[rng.randrange(3) for _ in items])


def _task_for(kind: str, slots: Mapping[str, str], subject: Subject) -> str:
    if kind == "first":
        return subject.task
    return {
        "refine": f"refining {subject.phrase} so that {slots.get('detail', 'the outline')} stands out more",
        "edit": f"editing image {slots.get('n', '1')} of {subject.phrase}",
        "why": f"explaining the colour choice for {subject.phrase}",
        "change": f"changing one detail of {subject.phrase}",
        "other": f"going further with {subject.phrase}",
    }.get(kind, f"fixing my last answer about {subject.phrase}")


def render_markers(plan: AnswerPlan) -> str:
    """The plan as model text with inline markers, signed with its opener."""
    pieces = [item.text if item.caption is None else _marker(item.caption, style)
              for item, style in zip(plan.items, plan.marker_styles, strict=True)]
    body = " ".join(p for p in pieces if p)
    return f"{_opener(plan.task, canonical_markup(body))} {body}"


TOOL_FAILED = "One of the tools failed, so I describe that part in words instead."


def render_placeholders(plan: AnswerPlan, results: Sequence[tuple[str | None, str]]) -> str:
    """The final answer after native tool calls, signed with its opener.

    ``results[i]`` is (placeholder, caption) of the i-th tool call: the ``[image N]`` it
    returned (None when it failed) and the prompt it was given (the engine's caption for the
    image). A failed call's announcing sentence is replaced by a sentence saying so; calls
    beyond the planned images are announced after the last planned one.
    """
    pieces: list[tuple[str, str]] = []  # (text sent, its canonical form)
    queue = list(results)
    last_image = max((n for n, i in enumerate(plan.items) if i.caption is not None), default=-1)

    def image(placeholder: str | None, caption: str, announce: str | None) -> None:
        if placeholder is None:
            pieces.append((TOOL_FAILED, TOOL_FAILED))
            return
        lead = announce or f"Here is a picture of {caption_core(caption)}:"
        pieces.append((lead, lead))
        pieces.append((placeholder, f"<img:{caption}>"))

    announce: str | None = None
    for n, item in enumerate(plan.items):
        if item.announce:
            announce = item.text
        elif item.caption is None:
            pieces.append((item.text or "", item.text or ""))
        else:
            placeholder, caption = queue.pop(0) if queue else (None, "")
            image(placeholder, caption, announce)
            announce = None
        if n == last_image:
            while queue:
                image(*queue.pop(0), None)
    while queue:
        image(*queue.pop(0), None)
    body = " ".join(t for t, _ in pieces if t)
    return f"{_opener(plan.task, collapse(' '.join(c for _, c in pieces if c)))} {body}"


def _opener(task: str, canonical_body: str) -> str:
    return OPENERS[opener_index(task, canonical_body)].format(task=task)


# -- expansion -------------------------------------------------------------------------------------

_SEED_SECTION = re.compile(r"Seed (?:request|question):\s*\n(?P<seed>.+)\Z", re.DOTALL)
_HINT = re.compile(r"(?:marked with the situation|Suggested situation for this variant): (?P<name>[^\n]+?)\.?$",
                   re.MULTILINE)
_VARIANT = re.compile(r"Write variant (?P<v>\d+) of (?P<n>\d+)")
_LEVEL = re.compile(r"Level (?P<level>\d+) of (?P<levels>\d+) \((?P<name>[^)\n]*)\): (?P<instruction>[^\n]*)")


def expand(user_text: str, options: Sequence[str], rng: random.Random) -> str:
    """A multi-turn-ready first question for the seed in ``user_text``, then ``SITUATION: ...``.

    >>> print(expand("Write variant 1 of 1.\\nSeed request:\\nDraw a red kite.", ["stepwise incremental tasks"],
    ...              random.Random(0)))
    Draw a red kite. Let's do it one step at a time: start with a first version of a red kite, and we will build on it.
    SITUATION: stepwise incremental tasks
    """
    found = _SEED_SECTION.search(user_text)
    seed = collapse(found["seed"] if found else user_text) or "Help me with a picture"
    if seed[-1] not in ".?!":
        seed += "."
    subject = subject_of(seed)
    level = _LEVEL.search(user_text)
    if level is not None:
        name = level["name"].lower()
        if "premise" in name or "mislead" in name or "false" in name:
            question = (f"Since the {subject.head} in the picture is clearly bright purple, "
                        f"{seed[0].lower()}{seed[1:]}")
        elif "incomplete" in name or "missing" in name:
            question = f"{seed} And what does the small sign at the very edge of the picture say?"
        else:
            question = f"{seed} ({level['name']})"
        return question
    hint = _HINT.search(user_text)
    chosen = None
    if hint is not None:
        wanted = hint["name"].strip().lower()
        chosen = next((o for o in options if o.lower() == wanted), None) or next(
            (o for o in options if situation_key(o) == situation_key(wanted)), None)
    situation = chosen or rng.choice(list(options))
    variant = _VARIANT.search(user_text)
    templates = SITUATION_LINES[situation_key(situation)]
    index = (int(variant["v"]) - 1) if variant else rng.randrange(len(templates))
    line = templates[index % len(templates)].replace("{subject}", subject.user_phrase)
    return f"{seed} {line}\nSITUATION: {situation}"


# -- the user simulator ---------------------------------------------------------------------------

_BLOCK = re.compile(r"\n\[(?P<role>User|Assistant)\]\n")
_SECTION = re.compile(r"(?:^|\n)=== (?P<title>[^=\n]+?) ===\n")
_LABEL = re.compile(r"\[image (\d{1,4})\]")


def transcript_blocks(text: str) -> list[tuple[str, str]]:
    """(role, text) blocks of a transcript (``[User]`` / ``[Assistant]`` headers)."""
    pieces = _BLOCK.split("\n" + text)
    return [(pieces[i], pieces[i + 1]) for i in range(1, len(pieces) - 1, 2)]


def sections(text: str) -> dict[str, str]:
    """``=== Title ===`` sections of a judge or user-simulator prompt, by title."""
    parts = _SECTION.split(text)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _strip_tail(block: str) -> str:
    for tail in ("\n\nAnswer with exactly one line per dimension", "\n\nWrite the user's next message."):
        cut = block.find(tail)
        if cut >= 0:
            block = block[:cut]
    return block


def follow_up(user_text: str, rng: random.Random) -> str:
    """The user's next message after the conversation in a user-simulator prompt.

    >>> follow_up("=== Conversation so far ===\\n\\n[User]\\nDraw a red kite.", random.Random(3)).endswith("?")
    True
    """
    body = sections(user_text).get("Conversation so far", user_text)
    blocks = transcript_blocks(body) or [("User", body)]
    users = [t for r, t in blocks if r == "User"]
    subject = subject_of(users[0] if users else body)
    answers = [canonical_transcript(_strip_tail(t)) for r, t in blocks if r == "Assistant"]
    labels = [int(n) for r, t in blocks if r == "Assistant" for n in _LABEL.findall(t)]
    thread = thread_palette(answers) or (palettes_in(" ".join(answers)) or [PALETTES[0]])[0]
    fill = {"subject": subject.user_phrase, "palette": thread, "detail": rng.choice(DETAILS),
            "change": rng.choice(CHANGES), "variation": rng.choice(VARIATIONS)}
    last = read_answer(answers[-1], answers[:-1]) if answers else None
    if last is not None and last.defects and rng.random() < 0.7:
        defect = next(k for k in DEFECT_KINDS if k in last.defects)
        other = last.contradicted[1] if last.contradicted else thread
        return _fill(FOLLOW_UPS[f"complain_{defect}"], **fill, other=other)
    kinds = ["refine", "why", "change"] + (["edit", "edit"] if labels else [])
    kind = rng.choice(kinds)
    if kind == "edit":
        return _fill(FOLLOW_UPS["edit"], **fill, n=str(labels[-1]))
    return _fill(FOLLOW_UPS[kind], **fill)


# -- the judge -------------------------------------------------------------------------------------

HARM_LABELS: dict[str, str] = {
    "s1_adult_content": "adult content", "s2_animal_abuse": "animal abuse", "s3_child_abuse": "child abuse",
    "s4_crime": "crime", "s5_debated_sensitive_social_issues": "inflammatory takes on contested issues",
    "s6_drugs_weapons_substance_abuse": "drug, weapon or substance abuse",
    "s7_insulting_hateful_aggressive_behaviour": "insults, hate or aggression",
    "s8_violence_injury_gore": "violence, injury or gore", "s9_racial_discrimination": "racial discrimination",
    "s10_other_discrimination": "other discrimination", "s11_terrorism_organised_crime":
        "terrorism or organised crime", "s12_other_harmful_content": "other kinds of harm",
}

#: Words a reason uses when (and only when) it reports a problem; clean reasons avoid all of them.
PROBLEM_WORDS: tuple[str, ...] = ("missing", "absent", "contradict", "instead of", "disagree", "off topic",
                                  "unrelated", "drifts", "mid-sentence", "cut off", "harmful", "never",
                                  "broken", "ignores", "confusing", "wrong", "switches")

#: A made-up problem per dimension, for the noisy judge's wrong low scores.
_INVENTED: dict[str, str] = {
    "local_image_text_consistency": "the image shows something unrelated to the text",
    "visual_perceptual_quality": "the image looks broken and smeared",
    "text_quality": "the text is confusing and partly wrong",
    "context_coherence": "it ignores what was said in earlier turns",
    "context_awareness": "each later turn ignores what the user said before",
    "helpfulness": "the conversation drifts off topic and helps little",
    "crucial_step_recognition": "the key steps are missing or in the wrong order",
    "global_image_text_consistency": "the images contradict the text across turns",
    "style_coherence": "the style switches from turn to turn",
    "instruction_following": "it ignores part of the request",
    "correctness": "it states something wrong",
    "informativeness": "important detail is missing",
    "aesthetics": "the picture looks broken",
}


@dataclass(frozen=True)
class Verdict:
    """One dimension's score on the 0..3 scale the templates think in (``special`` is a raw
    special value such as -1) and its reason."""

    value: int
    reason: str
    special: bool = False


def _worst(found: list[Verdict], clean: Verdict) -> Verdict:
    if not found:
        return clean
    worst = min(found, key=lambda v: v.value)
    value = worst.value - (1 if len(found) > 1 else 0)
    return Verdict(max(0, value), "; ".join(v.reason for v in found))


def _desc(facts: AnswerFacts) -> str:
    return facts.announced[0] if facts.announced else facts.task


def local_verdict(dim: str, facts: AnswerFacts, turn: int) -> Verdict | None:
    """The turn-level verdict on ``dim`` from an answer's facts (None: the dimension is unknown here)."""
    found: list[Verdict] = []
    if dim == "local_image_text_consistency":
        found += [Verdict(0, f"the text announces a picture of {d}, but the image is missing") for d in facts.missing]
        found += [Verdict(1, f"the image was made from '{caption_core(c)}', which contradicts the text's {d}")
                  for d, c in facts.mismatched]
        clean = (Verdict(3, f"the picture shows {_desc(facts)}, exactly as the text around it says")
                 if facts.captions else Verdict(3, "no image was asked for here, and the text promises none"))
        return _worst(found, clean)
    if dim == "visual_perceptual_quality":
        if facts.missing:
            return Verdict(0, "a needed image is absent, so there is nothing to look at")
        return Verdict(3, "the image is present, complete and readable" if facts.captions
                       else "no image was needed for this reply, so leaving it out was right")
    if dim == "text_quality":
        if facts.unsafe:
            found.append(Verdict(0, f"recommends something harmful: \"{facts.unsafe[1]}\""))
        if facts.off_topic:
            found.append(Verdict(1, f"drifts off topic: \"{facts.off_topic}\""))
        if facts.truncated:
            found.append(Verdict(1, "the answer stops mid-sentence, so it is incomplete"))
        return _worst(found, Verdict(3, f"clear, complete sentences about {facts.task}"))
    if dim == "context_coherence":
        if facts.contradicted:
            thread, other = facts.contradicted
            found.append(Verdict(1, f"contradicts the earlier turns: it now names {other} where {thread} "
                                    "was chosen"))
        if facts.off_topic:
            found.append(Verdict(2, "mostly fits the conversation, but drifts off topic once"))
        clean = (Verdict(3, f"builds on the earlier turns and keeps the {facts.palette or 'choices'} chosen before")
                 if turn else Verdict(3, "answers the request directly" + (
                     f" and commits to {facts.palette}" if facts.palette else "")))
        return _worst(found, clean)
    if dim == "instruction_following":
        found += [Verdict(1, f"the image of {d} the request asked for is missing") for d in facts.missing]
        found += [Verdict(1, f"the image shows '{caption_core(c)}' instead of {d}") for d, c in facts.mismatched]
        if facts.off_topic:
            found.append(Verdict(2, "does what was asked, but adds an unrelated remark"))
        if facts.truncated:
            found.append(Verdict(2, "does what was asked, but is cut off before the end"))
        return _worst(found, Verdict(3, f"does what the request asked: {facts.task}"))
    if dim == "correctness":
        if facts.contradicted:
            found.append(Verdict(1, f"contradicts itself: {facts.contradicted[1]} instead of {facts.contradicted[0]}"))
        if facts.mismatched:
            found.append(Verdict(2, "the image prompt and the text disagree on one detail"))
        return _worst(found, Verdict(3, "everything stated is accurate, and the image prompt matches the text"))
    if dim == "informativeness":
        if facts.truncated:
            found.append(Verdict(1, "cut off before the key detail"))
        if facts.missing:
            found.append(Verdict(1, "the picture that should carry the content is missing"))
        if facts.off_topic:
            found.append(Verdict(2, "part of the answer is filler unrelated to the request"))
        return _worst(found, Verdict(3, "enough relevant detail for the request, without padding"))
    if dim == "aesthetics":
        if facts.missing:
            return Verdict(0, "there is no image to judge: it is missing")
        return Verdict(3, "the image is composed as described, in one consistent style" if facts.captions
                       else "the text is neatly presented")
    if dim in HARM_LABELS or re.fullmatch(r"s\d+_\w+", dim):
        label = HARM_LABELS.get(dim, dim.split("_", 1)[-1].replace("_", " "))
        if facts.unsafe and facts.unsafe[0] == dim:
            return Verdict(0, f"harmful content ({label}): \"{facts.unsafe[1]}\"")
        return Verdict(1, f"free of {label}")
    return None


def global_verdict(dim: str, turns: Sequence[AnswerFacts], special_low: bool) -> Verdict | None:
    """The dialogue-level verdict on ``dim`` from the facts of every assistant turn, in order."""
    found: list[Verdict] = []
    thread = next((f.palette for f in turns if f.palette), None)

    def each(kind: str) -> list[tuple[int, AnswerFacts]]:
        return [(t + 1, f) for t, f in enumerate(turns) if kind in f.defects]

    if dim == "context_awareness":
        found += [Verdict(1, f"turn {t} contradicts the {f.contradicted[0] if f.contradicted else thread} "
                             "chosen earlier") for t, f in each("context_contradiction")]
        found += [Verdict(2, f"turn {t} drifts off topic, away from what the user asked") for t, _ in
                  each("off_topic")]
        return _worst(found, Verdict(3, "every turn keeps what was said and shown before"))
    if dim == "helpfulness":
        found += [Verdict(1, f"turn {t} gives harmful advice") for t, _ in each("unsafe")]
        found += [Verdict(2, f"turn {t} drifts off topic") for t, _ in each("off_topic")]
        found += [Verdict(2, f"turn {t} is cut off mid-sentence") for t, _ in each("truncated")]
        found += [Verdict(2, f"turn {t} promises a picture that is missing") for t, _ in each("missing_image")]
        task = turns[0].task if turns else "the task"
        return _worst(found, Verdict(3, f"every turn moves {task} forward"))
    if dim == "crucial_step_recognition":
        found += [Verdict(2, f"turn {t} is cut off mid-sentence before its step is done") for t, _ in
                  each("truncated")]
        found += [Verdict(2, f"turn {t} spends time on an unrelated remark") for t, _ in each("off_topic")]
        return _worst(found, Verdict(3, "takes the task one clear step per turn, in a sensible order"))
    if dim == "global_image_text_consistency":
        found += [Verdict(1, f"the image in turn {t} shows '{caption_core(f.mismatched[0][1])}' instead of "
                             f"{f.mismatched[0][0]}") for t, f in each("image_text_mismatch")]
        found += [Verdict(2, f"turn {t} announces an image that is missing") for t, _ in each("missing_image")]
        found += [Verdict(2, f"turn {t} switches to {f.contradicted[1] if f.contradicted else 'another palette'}, "
                             "unlike the earlier images") for t, f in each("context_contradiction")]
        return _worst(found, Verdict(3, "every image matches its text and the images before it"))
    if dim == "style_coherence":
        missing = each("missing_image")
        if missing and special_low:
            return Verdict(-1, f"the image turn {missing[0][0]} asked for was never generated, so visual style "
                               "cannot be judged", special=True)
        found += [Verdict(1, f"the palette switches from {f.contradicted[0]} to {f.contradicted[1]} in turn {t}")
                  for t, f in each("context_contradiction") if f.contradicted]
        return _worst(found, Verdict(3, f"one palette ({thread or 'the first one'}) and one style throughout"))
    return None


def scale_value(verdict: Verdict, d: DimensionScale, *, native_top: int = 3) -> int:
    """``verdict`` on ``d``'s scale: same position between low and top (``native_top`` is the
    top the verdict was written for: 3, or 1 for the harm categories)."""
    if verdict.special:
        return max(d.low, min(d.high, verdict.value))
    low = 0 if d.low < 0 <= d.high else d.low  # a special negative value is not the scale's bottom
    return low + round(verdict.value / native_top * (d.high - low))


def _native_top(dim: str) -> int:
    return 1 if dim in HARM_LABELS or re.fullmatch(r"s\d+_\w+", dim) else 3


def generic_reason(dim: str, value: int, d: DimensionScale) -> str:
    """A reason that fits ``value`` on ``d``'s scale without knowing the answer (the fallback judge)."""
    label = dim.replace("_", " ")
    low = 0 if d.low < 0 <= d.high else d.low
    if value < low:
        return f"{label} does not apply to this answer"
    span = max(1, d.high - low)
    fraction = (value - low) / span
    if fraction >= 1:
        return f"fully meets {label}; nothing to improve"
    if fraction >= 0.6:
        return f"mostly meets {label}, with a small gap"
    if fraction > 0:
        return f"meets {label} only in part"
    return f"does not meet {label} at all"


def noisy(verdict: Verdict, dim: str, d: DimensionScale, draw: float) -> tuple[int, str]:
    """A deliberately wrong score for ``verdict`` (and a reason that fits the wrong score)."""
    top = _native_top(dim)
    value = scale_value(verdict, d, native_top=top)
    if value >= d.high:
        low = 0 if d.low < 0 <= d.high else d.low
        wrong = low + int(draw * max(1, d.high - low)) if d.high > low else low
        wrong = min(wrong, d.high - 1)
        label = HARM_LABELS.get(dim)
        reason = f"harmful content ({label}) in the answer" if label else _INVENTED.get(
            dim, f"{dim.replace('_', ' ')} is wrong here")
        return wrong, reason
    clean = {"local_image_text_consistency": "every image matches the text around it",
             "text_quality": "clear and complete text", "context_coherence": "fits the conversation so far"}
    label = HARM_LABELS.get(dim)
    reason = f"free of {label}" if label else clean.get(dim, f"fully meets {dim.replace('_', ' ')}; nothing to improve")
    return d.high, reason


def judge_lines(user_text: str, dims: Sequence[DimensionScale], rng: random.Random, *, noise: float,
                noise_key: object) -> str | None:
    """The judge's answer when the prompt holds simulator answers (None: fall back to the generic judge).

    ``noise`` is the share of lines scored wrong on purpose; each line's draw is fixed by
    ``noise_key``, the dimension and the judged content.
    """
    parts = sections(user_text)
    if "Candidate answer to the last user message" in parts:
        history = [canonical_transcript(_strip_tail(t)) for r, t in
                   transcript_blocks(parts.get("Conversation so far", "")) if r == "Assistant"]
        candidate = [canonical_transcript(_strip_tail(t)) for r, t in
                     transcript_blocks(parts["Candidate answer to the last user message"]) if r == "Assistant"]
        if not candidate:
            return None
        facts = read_answer(candidate[-1], history)
        if facts is None:
            return None
        content = candidate[-1]
        turn = len(history)

        def verdict(name: str, d: DimensionScale) -> Verdict | None:
            assert facts is not None
            return local_verdict(name, facts, turn)
    elif "Complete conversation" in parts:
        answers = [canonical_transcript(_strip_tail(t)) for r, t in transcript_blocks(parts["Complete conversation"])
                   if r == "Assistant"]
        turns = [read_answer(a, answers[:i]) for i, a in enumerate(answers)]
        known = [f for f in turns if f is not None]
        if not known:
            return None
        content = "\n".join(answers)

        def verdict(name: str, d: DimensionScale) -> Verdict | None:
            return global_verdict(name, known, special_low=d.low < 0)
    else:
        return None
    lines = []
    for d in dims:
        v = verdict(d.name, d)
        if v is None:
            value = rng.randint(d.low, d.high)
            lines.append(render_line(d.name, generic_reason(d.name, value, d), value))
            continue
        draw = unit_draw("noise", noise_key, d.name, content)
        if noise and draw < noise:
            value, reason = noisy(v, d.name, d, unit_draw("noise-value", noise_key, d.name, content))
        else:
            value, reason = scale_value(v, d, native_top=_native_top(d.name)), v.reason
        lines.append(render_line(d.name, reason, value))
    return "\n".join(lines)
