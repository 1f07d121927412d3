"""The resource library: shipped content, validation, overrides, search, and moments."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.library import ContentError, Library, Moment, load_library
from bot.library.model import Entry

ROOT = Path(__file__).resolve().parents[2]
SEED_TITLES = {
    "Peer support research library",
    "Disclosure and apology: What's missing?",
    "Respectful management of serious clinical adverse events",
    'The natural history of recovery for the healthcare provider "second victim" after adverse '
    "patient events",
    "Difficult events in patient care impact all staff, but support from peers can help",
    "Providing just-in-time support",
    "Leadership in tragedy: supporting staff, especially those closest to the patient and family",
    '"Healing the Healer" documentary',
    "The MITSS story",
    "Doctors make mistakes. Can we talk about that?",
}
# The only deep links the domain brief gives; any other address must be a site, marked so.
KNOWN_DEEP_LINKS = {
    "https://www.hpoe.org/resources/guidesreports/1209",
    "https://pubmed.ncbi.nlm.nih.gov/19812092",
    "https://betsylehmancenterma.gov/initiatives/clinician-support/peer-support-baseline-data-report",
}


@pytest.fixture(scope="module")
def library() -> Library:
    return load_library()


def override(tmp_path: Path, text: str, name: str = "ours.yml") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


# -- shipped content ---------------------------------------------------------------------------


def test_all_ten_toolkit_resources_ship(library: Library) -> None:
    assert {e.title for e in library.of_kind("resource")} == SEED_TITLES


def test_no_deep_link_is_invented(library: Library) -> None:
    for entry in library.of_kind("resource"):
        if entry.address and not entry.site_only:
            assert entry.address in KNOWN_DEEP_LINKS, entry.id
        if entry.site_only:
            assert entry.where, f"{entry.id} says it is a site but not where to look"
    assert library.get("leadership-in-tragedy").address is None


def test_resource_types_follow_the_toolkit(library: Library) -> None:
    assert library.get("disclosure-and-apology").types == ("research", "story")
    assert library.get("ihi-respectful-management").types == ("research", "tool")
    assert library.get("leadership-in-tragedy").types == ("story", "tool")
    assert library.get("just-in-time-support").types == ("tool",)


def test_crisis_lines_ship_and_empty_slots_stay_hidden(library: Library) -> None:
    lines = {e.id: e for e in library.crisis_lines()}
    assert lines["lifeline-988"].phone == "988"
    assert lines["physician-support-line"].phone == "1-888-409-0141"
    assert "8am to 1am Eastern" in lines["physician-support-line"].hours
    for slot in ("employee-assistance-program", "chaplaincy", "on-call-psychiatry"):
        assert slot not in lines
        assert any(e.id == slot and e.slot for e in library.all_entries)


def test_tips_cover_what_a_supporter_needs_on_accepting(library: Library) -> None:
    tips = " ".join(f"{t.title} {t.summary}" for t in library.of_kind("tip")).lower()
    for idea in ("never ask", "listen", "don't fix", "judge", "professional help", "988",
                 "confidential"):
        assert idea in tips, idea


def test_leader_guidance_covers_the_seven_themes(library: Library) -> None:
    ids = {e.id for e in library.of_kind("guidance")}
    assert ids == {"lead-open-reporting", "lead-just-culture", "lead-peer-support",
                   "lead-staffing", "lead-meaningful-interactions",
                   "lead-psychological-safety", "lead-use-data"}


def test_preset_prompts_have_answers_that_fit_buttons(library: Library) -> None:
    prompts = library.prompts()
    assert len(prompts) >= 5
    for prompt in prompts:
        assert len(prompt.title) <= 75
        assert 2 <= len(prompt.answers) <= 6
        assert all(len(answer) <= 75 for answer in prompt.answers)


# -- validation --------------------------------------------------------------------------------

GOOD = """\
resources:
  - id: our-guide
    title: Our own guide
    type: tool
    audience: [clinician]
    topics: [peer-support]
    address: https://intranet.example.org/guide
    summary: A guide written by our program.
"""


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("    title: Our own guide\n", ""), "line 2, entry 'our-guide': 'title' is required"),
    (GOOD.replace("type: tool", "type: podcast"), "unknown type 'podcast'"),
    (GOOD.replace("[clinician]", "[janitors]"), "unknown audience 'janitors'"),
    (GOOD.replace("[peer-support]", "[astrology]"), "add new topics with a top-level 'topics:'"),
    (GOOD.replace("https://intranet.example.org/guide", "http://intranet.example.org"),
     "well-formed https:// address"),
    (GOOD.replace("https://intranet.example.org/guide", "javascript:alert(1)"),
     "well-formed https:// address"),
    (GOOD.replace("https://intranet.example.org/guide", "https://exa mple.org"),
     "well-formed https:// address"),
    (GOOD.replace("A guide written by our program.", "x" * 601), "longer than 600 characters"),
    (GOOD.replace("    summary:", "    summery: typo\n    summary:"), "unknown field 'summery'"),
    (GOOD.replace("id: our-guide", "id: Our Guide!"), "'id' is required"),
    (GOOD.replace("    type: tool\n", ""), "'type' is required"),
    (GOOD + "    slot: true\n", "'slot' is only for crisis"),
    (GOOD + "    site_only: yes-please\n", "'site_only' must be true or false"),
    (GOOD.replace("resources:", "resourcez:"), "unknown section 'resourcez'"),
    ("- just a list\n", "expected sections"),
    ("resources:\n  - id: a\n    title: a: b\n", "line 3: not valid YAML"),
    ("prompts:\n  - id: long-question\n    title: " + "q" * 80 +
     "\n    audience: [leader]\n    scale: five_point\n    labels: [a, b, c, d, e]\n",
     "at most 75 characters"),
    ("prompts:\n  - id: four\n    title: Four labels?\n    audience: [leader]\n"
     "    scale: five_point\n    labels: [a, b, c, d]\n", "exactly 5 'labels'"),
    ("crisis:\n  - id: our-guide-2\n    title: T\n    audience: [clinician]\n    summary: S\n"
     "    labels: [a]\n", "only for prompts"),
])
def test_invalid_content_names_file_line_and_entry(tmp_path: Path, text: str,
                                                   expected: str) -> None:
    with pytest.raises(ContentError) as error:
        load_library(override(tmp_path, text))
    message = str(error.value)
    assert str(tmp_path / "ours.yml") in message
    assert expected in message


def test_a_duplicate_id_names_both_places(tmp_path: Path) -> None:
    override(tmp_path, GOOD, "a.yml")
    override(tmp_path, GOOD, "b.yml")
    with pytest.raises(ContentError, match=r"b\.yml line 2, entry 'our-guide'.*already used at "
                                           r".*a\.yml line 2"):
        load_library(tmp_path)


def test_an_override_may_not_change_an_entrys_kind(tmp_path: Path) -> None:
    with pytest.raises(ContentError, match="overrides a crisis entry"):
        load_library(override(tmp_path, "resources:\n  - id: lifeline-988\n    title: x\n"))


def test_a_missing_override_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContentError, match="not a directory"):
        load_library(tmp_path / "nope")


def test_invalid_content_stops_start_up_with_one_line(tmp_path: Path) -> None:
    content = override(tmp_path / "content", GOOD.replace("type: tool", "type: podcast"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PEERSUPPORT_"))}
    env.update(PYTHONPATH=str(ROOT), SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s",
               PEERSUPPORT_CONTENT_DIR=str(content), DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    result = subprocess.run([sys.executable, "-m", "bot"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ours.yml line 2, entry 'our-guide': unknown type" in lines[0]


def test_an_id_that_is_not_text_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ContentError, match=r"ours\.yml line 2: 'id' is required"):
        load_library(override(tmp_path, GOOD.replace("id: our-guide", "id: [our, guide]")))


@pytest.mark.parametrize(("extra", "expected"), [
    ("    summery: typo\n    hidden: maybe\n", "unknown field 'summery'"),
    ("    hidden: maybe\n    phone: [1]\n", "'hidden' must be true or false"),
    ("    phone: [1]\n    hidden: maybe\n", "'phone' must be text"),
    ("    phone: [1]\n    audience: [janitors]\n", "'phone' must be text"),
    ("    audience: [janitors]\n    topics: [astrology]\n", "unknown audience 'janitors'"),
    ("    topics: [astrology]\n    address: http://x.org\n", "unknown topics 'astrology'"),
    ("    address: http://x.org\n    slot: true\n", "'address' must be a well-formed"),
])
def test_of_several_problems_the_first_to_fix_is_reported(tmp_path: Path, extra: str,
                                                          expected: str) -> None:
    text = GOOD.replace("    audience: [clinician]\n    topics: [peer-support]\n", "")
    text = text.replace("    address: https://intranet.example.org/guide\n", "")
    text = text.replace("    title:", "    audience: [clinician]\n    title:") + extra
    with pytest.raises(ContentError) as error:
        load_library(override(tmp_path, text))
    assert f"ours.yml line 2, entry 'our-guide': {expected}" in str(error.value)


def test_values_are_read_as_written_and_tidied(tmp_path: Path) -> None:
    library = load_library(override(tmp_path, """\
crisis:
  - id: our-line
    title: "  Our   line "
    audience: clinician
    topics: [" crisis "]
    phone: 5550100
    hours: 24.7
    summary: >
      Folded
      over lines.
"""))
    line = library.get("our-line")
    assert (line.title, line.audience, line.topics) == ("Our line", ("clinician",), ("crisis",))
    assert (line.phone, line.hours, line.summary) == ("5550100", "24.7", "Folded over lines.")
    assert line.moments is None and line.local and line.origin.endswith("ours.yml line 2")


def test_an_empty_list_field_is_refused_rather_than_read_as_left_out(tmp_path: Path) -> None:
    with pytest.raises(ContentError, match="'moments' must be a word or a list of words"):
        load_library(override(tmp_path, "crisis:\n  - id: lifeline-988\n    moments:\n"))


def test_content_shapes_name_every_field_an_entry_has() -> None:
    from dataclasses import fields

    from bot.library.model import SHAPES

    given = {f.name for f in fields(Entry)} - {"kind", "origin", "local", "types"} | {"type"}
    for shape in SHAPES.values():
        assert {f.alias or name for name, f in shape.model_fields.items()} == given


# -- overrides ---------------------------------------------------------------------------------


def test_an_organisation_fills_slots_adds_and_replaces(tmp_path: Path) -> None:
    library = load_library(override(tmp_path, GOOD + """\
crisis:
  - id: employee-assistance-program
    phone: 1-800-555-0100
    address: https://intranet.example.org/eap
  - id: physician-support-line
    hidden: true
"""))
    eap = library.get("employee-assistance-program")
    assert eap is not None and eap.phone == "1-800-555-0100"
    assert eap.summary, "fields the override does not give are kept from the shipped entry"
    assert library.get("physician-support-line") is None
    assert library.get("our-guide").title == "Our own guide"
    assert library.search("own guide").entries[0].id == "our-guide"
    assert "employee-assistance-program" in {e.id for e in library.crisis_lines()}


def test_an_organisation_may_add_topics(tmp_path: Path) -> None:
    text = "topics: [night-shift]\n" + GOOD.replace("[peer-support]", "[night-shift]")
    library = load_library(override(tmp_path, text))
    assert library.get("our-guide").topics == ("night-shift",)
    assert library.search("night shift").entries[0].id == "our-guide"


# -- search and browse -------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "best"), [
    ("second victim", "scott-natural-history-second-victim"),
    ("apologies", "disclosure-and-apology"),
    ("leadrship tragedy", "leadership-in-tragedy"),
    ("documentary", "healing-the-healer"),
    ("healer", "healing-the-healer"),
    ("Goldman", "doctors-make-mistakes"),
    ("MITSS", "mitss-story"),
    ("psychologicál safety", "lead-psychological-safety"),
    ("suicide", "lifeline-988"),
    ("just in time", "just-in-time-support"),
    ("staffing workloads", "lead-staffing"),
])
def test_search_puts_the_best_match_first(library: Library, query: str, best: str) -> None:
    assert library.search(query).entries[0].id == best


def test_entries_matching_more_words_rank_higher(library: Library) -> None:
    ranked = [e.id for e in library.search("peer support research").entries]
    assert ranked[0] == "betsy-lehman-research-library"


@pytest.mark.parametrize("query", ["", "the of and", "zzzqqq", "!!!"])
def test_searches_with_nothing_to_match_find_nothing(library: Library, query: str) -> None:
    assert library.search(query).total == 0


def test_find_browses_without_words_and_by_category_word(library: Library) -> None:
    assert library.find("").total == 10
    stories = library.find("stories")
    assert stories.category == "story"
    assert {e.id for e in stories.entries} <= {e.id for e in library.of_kind("resource")}
    assert all("story" in e.types for e in stories.entries)
    for_leaders = library.find("", category="research", audience="leader")
    assert for_leaders.total > 0 and all("leader" in e.audience for e in for_leaders.entries)
    assert library.find("help").entries[0].kind == "crisis"


def test_paging_visits_every_result_once(library: Library) -> None:
    seen: list[str] = []
    offset = 0
    while True:
        page = library.find("peer support", offset=offset)
        seen.extend(e.id for e in page.entries)
        if not page.has_more:
            break
        offset += page.limit
    assert len(seen) == len(set(seen)) == library.search("peer support").total


# -- moments -----------------------------------------------------------------------------------


def test_a_waiting_requester_gets_a_few_resources_and_the_crisis_lines(library: Library) -> None:
    moment = library.for_moment(Moment.REQUEST_WAITING, audience="clinician")
    assert 1 <= len(moment.resources) <= 2
    assert all("clinician" in e.audience for e in moment.resources)
    assert [e.id for e in moment.crisis][:1] == ["lifeline-988"]
    assert moment.tips == () and moment.guidance == ()


def test_an_accepting_supporter_gets_the_tips(library: Library) -> None:
    moment = library.for_moment(Moment.SUPPORTER_ACCEPTED, audience="supporter")
    assert [e.id for e in moment.tips] == [e.id for e in library.of_kind("tip")]
    assert {e.id for e in moment.crisis} >= {"lifeline-988", "physician-support-line"}


def test_struggling_gets_professional_help_including_filled_slots(tmp_path: Path) -> None:
    library = load_library(override(tmp_path, "crisis:\n  - id: chaplaincy\n"
                                              "    phone: ext. 4400\n"))
    moment = library.for_moment(Moment.CHECKIN_STRUGGLING, audience="clinician")
    assert "chaplaincy" in {e.id for e in moment.crisis}


def test_a_leader_posting_a_prompt_gets_guidance_on_its_topics(library: Library) -> None:
    moment = library.for_moment(Moment.LEADER_PROMPT, audience="leader", topics=["staffing"])
    assert moment.guidance[0].id == "lead-staffing"
    assert len(moment.guidance) == 3 and moment.crisis == ()


def test_the_home_gets_a_short_selection(library: Library) -> None:
    moment = library.for_moment(Moment.HOME, audience="clinician")
    assert 1 <= len(moment.resources) <= 3 and moment.crisis


def test_an_entry_can_opt_out_of_every_moment(tmp_path: Path) -> None:
    library = load_library(override(tmp_path, "crisis:\n  - id: lifeline-988\n    moments: []\n"))
    assert library.for_moment(Moment.HOME).crisis[0].id != "lifeline-988"
    assert library.get("lifeline-988") is not None


def test_entry_shown_rules() -> None:
    assert Entry(id="x", kind="crisis", title="t", slot=True).shown is False
    assert Entry(id="x", kind="crisis", title="t", slot=True, phone="1").shown is True
    assert Entry(id="x", kind="resource", title="t", hidden=True).shown is False


def test_the_readme_example_override_is_valid() -> None:
    library = load_library(ROOT / "content" / "examples")
    assert library.get("employee-assistance-program").phone == "1-800-555-0100"
    assert library.get("leadership-in-tragedy").address.startswith("https://intranet.")
    waiting = library.for_moment(Moment.REQUEST_WAITING, audience="clinician")
    assert "our-night-shift-debrief" in {e.id for e in waiting.resources}
