"""Tags staff give members (标签 <手机|卡号> 瑜伽): words a segment selects by (tag=瑜伽)."""

from tortoise import fields
from tortoise.models import Model

TAG_MAX_LENGTH = 16


class MemberTag(Model):
    id = fields.BigIntField(primary_key=True)
    member = fields.ForeignKeyField("models.Member", related_name="tags")
    tag = fields.CharField(max_length=TAG_MAX_LENGTH)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "member_tag"
        # The unique pair makes tagging twice a no-op and serves "has this member that tag";
        # the tag index serves "is there such a tag" and listing a tag's members.
        unique_together = (("member_id", "tag"),)
        indexes = (("tag", "member_id"),)
