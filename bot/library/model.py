"""What a library entry is, the vocabulary it may use, and the size limits its texts must keep."""

from __future__ import annotations

from dataclasses import dataclass

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
PROMPT_TITLE_LIMIT = 75


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
