"""The one error a campaign operation raises."""

from __future__ import annotations

from typing import Any


class CampaignError(Exception):
    """A campaign operation refused. `reason` is a short code (bad_segment, unknown_template,
    unknown_coupon, no_message, bad_channel, bad_holdout, past_time, bad_state, not_found);
    str() is an English one-line message for the CLI and the logs; `values` what a message in
    another language needs (for bad_segment: segment, and the SegmentSyntaxError's kind,
    position, example and values as `error`)."""

    def __init__(self, reason: str, message: str, **values: Any):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.values = values

    def __str__(self) -> str:
        return self.message
