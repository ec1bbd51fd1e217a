"""Channels turn WeChat XML and SMS uplinks into one Inbound shape."""
