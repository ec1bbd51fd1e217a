"""Outbound: the WeChat API client, Aliyun SMS, and the outbox that records every send."""
