"""Prometheus metrics, one registry per app so tests can build many apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inbound = Counter("memberbot_inbound_total", "Inbound messages",
                               ["channel", "kind", "outcome"], registry=self.registry)
        self.latency = Histogram("memberbot_inbound_seconds", "Time to answer an inbound message",
                                 ["channel"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 5))
        self.rejected = Counter("memberbot_rejected_total", "Refused HTTP requests",
                                ["status"], registry=self.registry)
        self.deliveries = Counter("memberbot_deliveries_total",
                                  "Outbound messages by channel and how they ended",
                                  ["channel", "status"], registry=self.registry)
        self.sms_refused = Counter("memberbot_sms_refused_total",
                                   "Verification SMS not sent, by reason", ["reason"],
                                   registry=self.registry)
        self.token_refreshes = Counter("memberbot_token_refreshes_total",
                                       "Access tokens fetched from WeChat by this process",
                                       registry=self.registry)
