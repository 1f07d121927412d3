"""What a library entry is, the vocabulary it may use, the size limits its texts must keep, and
the shape each kind of entry must have in a content file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Where each kind of entry lives in a content file.
SECTIONS = {"resources": "resource", "crisis": "crisis", "tips": "tip", "guidance": "guidance",
            "prompts": "prompt"}
TYPES = frozenset({"research", "story", "tool"})
AUDIENCES = frozenset({"clinician", "supporter", "leader", "coordinator"})
MOMENTS = frozenset({"request_waiting", "supporter_accepted", "checkin_struggling",
                     "leader_prompt", "home"})
# Files may add topics with a top-level `topics:` list.
BASE_TOPICS = frozenset({
    "adverse-events", "apology", "communication", "confidentiality", "counseling", "crisis",
    "data", "disclosure", "follow-up", "just-culture", "leadership", "listening", "peer-support",
    "professional-help", "psychological-safety", "recovery", "referral", "reporting", "research",
    "second-victim", "self-care", "spiritual-care", "staffing", "stories", "wellbeing",
})

# Block Kit limits, kept with margin: a header's text is at most 150 characters, a button's or
# menu option's 75, a section's 3000 (an entry's parts share one section), a URL 3000.
LIMITS = {"title": 150, "summary": 600, "where": 200, "source": 200, "phone": 40,
          "hours": 100, "address": 1000, "label": 75}
TEXT_LIMIT = 600  # any other text field
PROMPT_TITLE_LIMIT = 75

ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
URL = re.compile(r"^https://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(/[^\s<>|]*)?$")


@dataclass(frozen=True)
class Entry:
    """One item of the library: a resource, a crisis line, a tip, leader guidance or a prompt."""

    id: str
    kind: str
    title: str
    summary: str = ""
    audience: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    address: str | None = None
    site_only: bool = False
    where: str | None = None
    source: str | None = None
    moments: tuple[str, ...] | None = None  # None: the kind's default moments
    phone: str | None = None
    hours: str | None = None
    slot: bool = False
    hidden: bool = False
    scale: str | None = None
    labels: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    origin: str = ""  # file and line it came from, for error messages
    local: bool = False  # added by the organisation, so offered before shipped entries

    @property
    def shown(self) -> bool:
        """False for hidden entries and for organisation slots nobody has filled in yet."""
        if self.hidden:
            return False
        return not self.slot or bool(self.phone or self.address)

    @property
    def answers(self) -> tuple[str, ...]:
        """A prompt's answer choices, in order."""
        return self.labels if self.scale == "five_point" else self.options


# -- shapes of content files -------------------------------------------------------------------
# Strict: YAML already gives real types, so nothing is coerced beyond what is written below.


def _listed(value: Any) -> Any:
    # One word may stand for a list of one; anything but a list is left for pydantic to refuse.
    return (value,) if isinstance(value, str) else tuple(value) if isinstance(value, list) else value


def _as_text(value: Any) -> Any:
    # YAML reads a phone number such as 988 as a number; whitespace is folded as Slack would.
    if isinstance(value, int | float):
        value = str(value)
    return " ".join(value.split()) if isinstance(value, str) else value


def _folded(value: Any) -> Any:
    return " ".join(value.split()) if isinstance(value, str) else value


def _present(value: str, info: ValidationInfo) -> str:
    if not value:
        raise PydanticCustomError("required", f"'{info.field_name}' is required")
    return value


def _id_like(value: str) -> str:
    if not ID.match(value):
        raise PydanticCustomError("id", "not lowercase letters, digits and hyphens")
    return value


Words = Annotated[tuple[str, ...], BeforeValidator(_listed),
                  AfterValidator(lambda words: tuple(w.strip() for w in words))]
Text = Annotated[str | None, BeforeValidator(_as_text)]
# A required text must be written as text: a bare number is not a title.
RequiredText = Annotated[str, BeforeValidator(_folded), AfterValidator(_present)]
Section = Annotated[list[dict[Any, Any]], BeforeValidator(lambda value: value or [])]


class ContentFile(BaseModel):
    """A content file: its sections of entries, and the topics it adds to the vocabulary."""

    model_config = ConfigDict(extra="forbid", strict=True)

    topics: Annotated[list[Annotated[str, AfterValidator(_id_like)]],
                      BeforeValidator(lambda value: value or [])] = []
    resources: Section = []
    crisis: Section = []
    tips: Section = []
    guidance: Section = []
    prompts: Section = []


class EntryShape(BaseModel):
    """The fields an entry may give and the rules each keeps; subclasses add their kind's."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: Annotated[str, AfterValidator(_id_like)]
    title: RequiredText = Field(max_length=LIMITS["title"])
    summary: RequiredText = Field(max_length=LIMITS["summary"])
    audience: Words = Field(default=(), validate_default=True)
    topics: Words = ()
    types: Words = Field(default=(), alias="type")
    # Left out, the kind's default moments apply; an empty value is refused like any list's.
    moments: Words = Field(default=None)
    address: Text = Field(default=None, max_length=LIMITS["address"])
    site_only: bool = False
    where: Text = Field(default=None, max_length=LIMITS["where"])
    source: Text = Field(default=None, max_length=LIMITS["source"])
    phone: Text = Field(default=None, max_length=LIMITS["phone"])
    hours: Text = Field(default=None, max_length=LIMITS["hours"])
    slot: bool = False
    hidden: bool = False
    scale: Text = Field(default=None, max_length=TEXT_LIMIT)
    labels: Words = ()
    options: Words = ()

    @field_validator("audience")
    @classmethod
    def _has_audience(cls, audience: tuple[str, ...]) -> tuple[str, ...]:
        if not audience:
            raise PydanticCustomError("no_audience",
                                      "'audience' is required: " + ", ".join(sorted(AUDIENCES)))
        return audience

    @field_validator("audience", "topics", "types", "moments")
    @classmethod
    def _known_words(cls, words: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        name = "type" if info.field_name == "types" else info.field_name
        allowed = {"audience": AUDIENCES, "type": TYPES, "moments": MOMENTS,
                   "topics": (info.context or {}).get("topics", BASE_TOPICS)}[name]
        for word in words:
            if word not in allowed:
                hint = "; add new topics with a top-level 'topics:' list" if name == "topics" else ""
                raise PydanticCustomError(
                    "vocabulary", f"unknown {name} {word!r}; known: {', '.join(sorted(allowed))}{hint}")
        return words

    @field_validator("address")
    @classmethod
    def _well_formed(cls, address: str | None) -> str | None:
        if address is not None and not URL.match(address):
            raise PydanticCustomError(
                "address", f"'address' must be a well-formed https:// address, got {address!r}")
        return address

    @model_validator(mode="after")
    def _fits_its_kind(self) -> Self:
        site = "'site_only' needs the site's 'address'" if self.site_only and not self.address else ""
        problem = self._type_rule() or site or self._slot_rule() or self._answers_rule()
        if problem:
            raise PydanticCustomError("kind", problem)
        return self

    def _type_rule(self) -> str:
        return "'type' is only for resources" if self.types else ""

    def _slot_rule(self) -> str:
        return "'slot' is only for crisis and professional-help entries" if self.slot else ""

    def _answers_rule(self) -> str:
        if self.scale or self.labels or self.options:
            return "'scale', 'labels' and 'options' are only for prompts"
        return ""


class Resource(EntryShape):
    """Research, a story or a tool from the toolkit."""

    def _type_rule(self) -> str:
        return "" if self.types else "'type' is required: " + ", ".join(sorted(TYPES))


class CrisisLine(EntryShape):
    """A crisis line or professional help; the organisation's own are slots it fills in."""

    def _slot_rule(self) -> str:
        return ""


class Tip(EntryShape):
    """A tip for a supporter who has just accepted a request."""


class Guidance(EntryShape):
    """Guidance for leaders."""


class Prompt(EntryShape):
    """A preset wellbeing-prompt question and its answers."""

    summary: Text = Field(default="", max_length=LIMITS["summary"])

    def _answers_rule(self) -> str:
        answers = self.labels if self.scale == "five_point" else self.options
        if len(self.title) > PROMPT_TITLE_LIMIT:
            return f"a prompt's question must be at most {PROMPT_TITLE_LIMIT} characters"
        if self.scale not in (None, "five_point"):
            return "'scale' must be five_point, or give 'options' instead"
        if self.scale == "five_point" and len(self.labels) != 5:
            return "a five_point scale needs exactly 5 'labels'"
        if self.scale is None and not 2 <= len(self.options) <= 6:
            return "a prompt needs a five_point scale or 2 to 6 'options'"
        if any(not answer or len(answer) > LIMITS["label"] for answer in answers):
            return f"each answer must be 1 to {LIMITS['label']} characters"
        return ""


SHAPES: dict[str, type[EntryShape]] = {"resource": Resource, "crisis": CrisisLine, "tip": Tip,
                                       "guidance": Guidance, "prompt": Prompt}
