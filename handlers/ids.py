"""Every slash command, action, callback and block id the app uses, in one place."""

from enum import StrEnum

PEERSUPPORT_COMMAND = "/peersupport"


class Action(StrEnum):
    """action_id values of buttons and inputs."""


class Callback(StrEnum):
    """callback_id values of modals and shortcuts."""


class Block(StrEnum):
    """block_id values the app reads back."""

    HELP = "help"
