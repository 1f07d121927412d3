"""Pure Block Kit builders: plain values in, Slack's JSON out, checked by slack_sdk's models."""
