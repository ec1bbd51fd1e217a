"""Scheduler runs, claimed in the database: one row per job and period."""

from tortoise import fields
from tortoise.models import Model


class JobRun(Model):
    id = fields.BigIntField(primary_key=True)
    job = fields.CharField(max_length=48)
    period = fields.CharField(max_length=32)  # e.g. "2026-11-22" for a daily job
    status = fields.CharField(max_length=8, default="running")  # running | done
    worker = fields.CharField(max_length=64)
    started_at = fields.DatetimeField()
    heartbeat_at = fields.DatetimeField()
    finished_at = fields.DatetimeField(null=True)
    result = fields.JSONField(null=True)

    class Meta:
        table = "job_run"
        unique_together = (("job", "period"),)
