"""Slack's published Web API specification, read so calls can be checked against it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SPEC_FILE = "slack_web_openapi_v2.json"

# Methods newer than the 2020 snapshot of the spec; they exist, so they are checked by hand.
NEWER_METHODS: dict[str, frozenset[str]] = {
    "apps.connections.open": frozenset(),
    "files.getUploadURLExternal": frozenset({"filename", "length"}),
    "files.completeUploadExternal": frozenset({"files"}),
}
NEWER_METHOD_SCOPES: dict[str, frozenset[str]] = {
    "apps.connections.open": frozenset({"connections:write"}),
    "files.getUploadURLExternal": frozenset({"files:write"}),
    "files.completeUploadExternal": frozenset({"files:write"}),
}
# Parameters Slack requires in practice that the snapshot does not mark as required.
REQUIRED_IN_PRACTICE: dict[str, frozenset[str]] = {
    "users.info": frozenset({"user"}),
    "chat.update": frozenset({"channel", "ts"}),
}
# The snapshot's legacy scope names and the granular bot scopes that replaced them.
LEGACY_SCOPES = {"chat:write:bot": "chat:write", "chat:write:user": "chat:write",
                 "files:write:user": "files:write"}


@dataclass(frozen=True)
class MethodSpec:
    """One Web API method: its required arguments and the scopes that allow it (any one suffices)."""

    name: str
    required: frozenset[str]
    scopes: frozenset[str]


class WebApiSpec:
    """The set of Web API methods Slack publishes."""

    def __init__(self, methods: dict[str, MethodSpec]):
        self.methods = methods

    @classmethod
    def load(cls, directory: Path) -> WebApiSpec:
        """Read the OpenAPI document from a directory of Slack's specs."""
        document = json.loads((directory / SPEC_FILE).read_text(encoding="utf-8"))
        methods: dict[str, MethodSpec] = {}
        for path, operations in document["paths"].items():
            name = path.lstrip("/")
            required: set[str] = set()
            scopes: set[str] = set()
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter.get("required") and parameter["name"] != "token":
                        required.add(parameter["name"])
                for requirement in operation.get("security", []):
                    for scope in requirement.get("slackAuth", []):
                        if scope != "none":
                            scopes.add(LEGACY_SCOPES.get(scope, scope))
            required |= REQUIRED_IN_PRACTICE.get(name, frozenset())
            methods[name] = MethodSpec(name, frozenset(required), frozenset(scopes))
        for name, required_args in NEWER_METHODS.items():
            methods.setdefault(name, MethodSpec(name, required_args, NEWER_METHOD_SCOPES[name]))
        return cls(methods)

    def problems(self, method: str, arguments: dict[str, object]) -> list[str]:
        """What is wrong with calling `method` with these arguments (empty when the call is valid)."""
        spec = self.methods.get(method)
        if spec is None:
            return [f"{method} is not a Slack Web API method"]
        missing = sorted(name for name in spec.required if arguments.get(name) in (None, ""))
        return [f"{method} is missing required argument {name!r}" for name in missing]


def find_spec_dir() -> Path | None:
    """Where Slack's specs are: $SLACK_API_SPECS_DIR when set (and only there), else
    ../shared/slack-api-specs beside the checkout, else the copy shipped with the sandbox."""
    configured = os.environ.get("SLACK_API_SPECS_DIR")
    if configured:
        candidates = [Path(configured)]
    else:
        checkout = Path(__file__).resolve().parents[2]
        candidates = [checkout.parent / "shared" / "slack-api-specs",
                      Path(__file__).resolve().parent / "slack_api_specs"]
    for candidate in candidates:
        if (candidate / SPEC_FILE).is_file():
            return candidate
    return None


@lru_cache(maxsize=1)
def load_default_spec() -> WebApiSpec | None:
    """The spec from find_spec_dir(), loaded once, or None when it is not on this machine."""
    directory = find_spec_dir()
    return WebApiSpec.load(directory) if directory else None
