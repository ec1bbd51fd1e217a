"""The one error a campaign operation raises."""

from __future__ import annotations


class CampaignError(Exception):
    """A campaign operation refused. `reason` is a short code (bad_segment, unknown_template,
    unknown_coupon, no_message, bad_channel, bad_holdout, past_time, bad_state, not_found);
    str() is an English one-line message for the CLI and the logs."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return self.message
