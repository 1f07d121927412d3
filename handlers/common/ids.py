"""Every slash command, action, callback and block id the app uses, in one place."""

import re
from enum import StrEnum

PEERSUPPORT_COMMAND = "/peersupport"


class Action(StrEnum):
    """action_id values of buttons and inputs."""

    LIBRARY_PREVIOUS = "library:previous"
    LIBRARY_NEXT = "library:next"
    LIBRARY_CATEGORY = "library:category"  # followed by ":<category>"
    LIBRARY_AUDIENCE = "library:audience"  # followed by ":<audience>"
    REQUEST_SUPPORT = "request_support"
    SET_AVAILABLE = "set_available"
    SET_AWAY = "set_away"
    OPEN_AWAY_UNTIL = "open_away_until"
    OPEN_PREFERENCES = "open_preferences"
    AWAY_UNTIL = "away_until"
    HOURS_START = "hours_start"
    HOURS_END = "hours_end"
    CASE_CAP = "case_cap"
    COOLDOWN = "cooldown"
    ACCEPT_OFFER = "accept_offer"
    DECLINE_OFFER = "decline_offer"
    CANCEL_REQUEST = "cancel_request"
    HAND_BACK = "hand_back"
    OPEN_CLOSE = "open_close"
    TAKE_REQUEST = "take_request"
    PICK_SUPPORTER = "pick_supporter"
    FIELD = "field"  # the single element inside each request and close modal input
    CHECKIN_ANSWER = "checkin:answer"  # followed by ":<answer>"
    TALK_AGAIN = "talk_again"
    CHECKIN_SNOOZE = "checkin_snooze"
    CHECKIN_CANCEL = "checkin_cancel"
    CHECKIN_HOURS = "checkin_hours"
    STOP_REMINDERS = "stop_checkin_reminders"
    PULSE_ANSWER = "pulse:answer"  # followed by ":<choice index>"
    PULSE_STOP = "pulse_stop"
    REACH_OUT_NOW = "reach_out_now"  # a DM that spoke of crisis: ask for someone now
    # Team support
    REQUEST_TEAM_SUPPORT = "request_team_support"  # the Home tab's "Support for my team"
    REQUEST_FOR = "request_for"  # the form's "for me" / "for my team" choice (switches the form)
    PROPOSE_TIMES = "team:propose_times"  # a supporter opens the proposal modal
    PICK_TIME = "team:pick_time"  # the caller picks a proposed time (value: proposal id)
    RESCHEDULE_SESSION = "team:reschedule"
    CANCEL_SESSION = "team:cancel_session"
    POST_INVITATION = "team:post_invitation"  # the caller agrees to post it in the team channel
    TEAM_TALK = "team:talk"  # a member's "Talk to a peer supporter" (value: team request id)
    TEAM_CHECKINS = "team:checkins"  # a member opts in to check-ins (value: team request id)
    OUTREACH_OPT_OUT = "team:opt_out"  # a member asks for no more team notes
    OUTREACH_OPT_IN = "team:opt_in"  # ...and changes their mind
    ANOTHER_SESSION = "team:another_session"  # the caller: "the team could use another session"


# Every library navigation button: one listener reads the list's state from the button value.
LIBRARY_ACTIONS = re.compile(r"^library:")
CHECKIN_ANSWERS = re.compile(r"^checkin:answer:")
PULSE_ANSWERS = re.compile(r"^pulse:answer:")


class Callback(StrEnum):
    """callback_id values of modals and shortcuts."""

    AWAY_UNTIL = "away_until"
    PREFERENCES = "supporter_preferences"
    REQUEST = "support_request"
    OPEN_REQUEST = "open_request"
    CLOSE_REQUEST = "close_request"
    REQUEST_SHORTCUT = "request_support"  # the global shortcut
    CHECKIN_HOURS = "checkin_hours"
    PULSE = "pulse"
    TEAM_REQUEST = "team_request"
    PROPOSE_TIMES = "team_propose_times"
    CLOSE_TEAM_REQUEST = "close_team_request"


class Block(StrEnum):
    """block_id values the app reads back."""

    HELP = "help"
    LIBRARY_CATEGORIES = "library_categories"
    LIBRARY_AUDIENCES = "library_audiences"
    LIBRARY_NAVIGATION = "library_navigation"
    AWAY_UNTIL = "away_until"
    CASE_CAP = "case_cap"
    COOLDOWN = "cooldown"
    HOURS = "hours"  # followed by ":<weekday>:start" or ":<weekday>:end"
    URGENCY = "urgency"
    CONNECTION = "connection"
    DEPARTMENT = "department"
    ROLE = "role"
    WHO = "who"
    ROLE_MATCH = "role_match"
    FOLLOWUPS = "followups"
    SAFETY = "safety"
    DURATION = "duration"
    REFERRED = "referred"
    NEED_MET = "need_met"
    HOURS_FROM = "hours_from"
    PRESET = "preset"
    QUESTION = "question"
    SCALE = "scale"
    OPTIONS = "options"
    CHANNEL = "channel"
    PULSE_DEPARTMENT = "pulse_department"
    RECURRENCE = "recurrence"
    WEEKDAY = "weekday"
    TIME = "time"
    OPEN_FOR = "open_for"
    HOURS_UNTIL = "hours_until"
    TEAM_UNIT = "team_unit"  # the unit chosen from the roster's departments
    TEAM_UNIT_TYPED = "team_unit_typed"  # ...or typed
    TEAM_SIZE = "team_size"
    TEAM_HELP = "team_help"
    TEAM_PEOPLE = "team_people"
    TEAM_USERGROUP = "team_usergroup"
    TEAM_CHANNEL = "team_channel"
    REQUEST_FOR = "request_for"
    SESSION_TIME = "session_time"  # followed by ":1", ":2" or ":3"
    SESSION_PLACE = "session_place"
    TEAM_SESSION = "team_session"  # followed by ":v<session_version>": one version's buttons
    PEOPLE_PRESENT = "people_present"
