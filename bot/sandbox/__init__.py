"""Slack's side of the conversation, on loopback: a Web API stand-in and a signed-request driver."""
