"""Peer support: a Slack app that connects clinicians with trained peer supporters."""
