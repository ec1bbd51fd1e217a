"""员工 in the console: the list each role sees; inviting with a QR code that the new employee
scans with WeChat (the scan arrives signed and encrypted, as WeChat sends it) and that binds
exactly once; revoking and changing roles, which end the employee's console sessions at once;
a manager kept to their own store's clerks; CSRF."""

from __future__ import annotations

import re

from bot.models import AuditEntry, ConsoleSession, Staff, StaffInvite
from bot.services import staff as staff_service
from tests.console.office import csrf_of
from tests.console.support import scan
from tests.support import add_staff


def listed(page: str) -> set[int]:
    return {int(i) for i in re.findall(r'data-staff="(\d+)"', page)}


async def invite(browser, **form) -> tuple[str, str]:
    """Send the invite form as the page renders it: its nonce and CSRF token included."""
    page = await browser.get("/console/staff")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)[1]
    data = {"csrf_token": csrf_of(page.text), "nonce": nonce, **form}
    result = await browser.post("/console/staff/invite", data=data)
    assert result.status == 200, result.text
    code = re.search(r"绑定 ([A-Z0-9]{8})", result.text)[1]
    return code, nonce


async def test_each_role_sees_whom_it_may(harness, browsers):
    h = harness
    clerk1 = await add_staff("o_c1", "clerk", name="小王")
    clerk2 = await add_staff("o_c2", "clerk", store="S002", name="小李")
    manager_browser, manager = await browsers.as_role(h, "manager")
    page = await manager_browser.get("/console/staff")
    assert page.status == 200
    assert listed(page.text) == {clerk1.id, manager.id}  # their store only
    # A manager may revoke a clerk, not themselves; roles are the owner's.
    assert f"/console/staff/{clerk1.id}/revoke" in page.text
    assert f"/console/staff/{manager.id}/revoke" not in page.text
    assert "/role" not in page.text
    assert '<option value="manager">' not in page.text  # they invite clerks only
    owner_browser, owner = await browsers.as_role(h, "owner", store="S002")
    page = await owner_browser.get("/console/staff")
    assert listed(page.text) == {clerk1.id, clerk2.id, manager.id, owner.id}
    assert f"/console/staff/{manager.id}/role" in page.text
    assert '<option value="owner">' in page.text
    clerk_browser, _ = await browsers.as_role(h, "clerk")
    assert (await clerk_browser.get("/console/staff")).status == 403
    assert (await clerk_browser.post("/console/staff/invite", token=await clerk_browser.csrf(),
                                     data={"role": "clerk", "nonce": "x" * 16})).status == 403
    assert not await StaffInvite.exists()


async def test_an_invite_qr_code_binds_the_scanner_exactly_once(harness, browsers):
    h = harness
    browser, manager = await browsers.as_role(h, "manager", name="李店长")
    code, _ = await invite(browser, role="clerk", name="小张")
    # WeChat made a temporary code for the scene invite:<code>, valid as long as the invite.
    made = [c for c in h.stand_ins.wechat.qrcodes.values() if c.scene.startswith("invite:")]
    assert [c.scene for c in made] == [f"invite:{code}"]
    assert (made[0].permanent, made[0].expire_seconds) == (False, 24 * 3600)
    entry = await AuditEntry.get(action="staff_invite")
    assert entry.staff_id == manager.id and entry.store_code == "S001"
    assert entry.after == {"role": "clerk", "store": "S001"}

    reply = await scan(h, "o_new", f"invite:{code}", event="subscribe")
    assert "绑定成功" in reply and "店员（小张）" in reply
    staff = await Staff.get(openid="o_new").select_related("store")
    assert (staff.role, staff.store.code, staff.active, staff.name) == ("clerk", "S001", True,
                                                                        "小张")
    # The same code again, by someone else or by the same account: refused, nothing changes.
    assert "邀请码无效" in await scan(h, "o_other", f"invite:{code}")
    assert "邀请码无效" in await scan(h, "o_new", f"invite:{code}")
    assert not await Staff.exists(openid="o_other")
    assert await AuditEntry.filter(action="staff_bind").count() == 1
    # And typed: the same invite, used.
    assert "邀请码无效" in await h.say("o_third", f"绑定 {code}")
    page = await browser.get("/console/staff")
    assert staff.id in listed(page.text)


async def test_a_double_submitted_invite_makes_one_invite(harness, browsers):
    h = harness
    browser, _ = await browsers.as_role(h, "owner")
    page = await browser.get("/console/staff")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)[1]
    data = {"csrf_token": csrf_of(page.text), "nonce": nonce, "role": "manager",
            "store": "S002"}
    first = await browser.post("/console/staff/invite", data=data)
    second = await browser.post("/console/staff/invite", data=data)
    code = re.search(r"绑定 ([A-Z0-9]{8})", first.text)[1]
    assert re.search(r"绑定 ([A-Z0-9]{8})", second.text)[1] == code
    assert await StaffInvite.all().count() == 1
    assert await AuditEntry.filter(action="staff_invite").count() == 1
    assert "示例门店·二店 · 店长" in first.text
    assert re.search(r'class="who">[^<]*· 老板', first.text)  # the user's own role, still
    # A new form (a new nonce) is a new invite.
    other, _ = await invite(browser, role="clerk")
    assert other != code and await StaffInvite.all().count() == 2


async def test_a_manager_invites_clerks_to_their_own_store_only(harness, browsers):
    h = harness
    browser, _ = await browsers.as_role(h, "manager")
    page = await browser.get("/console/staff")
    token = csrf_of(page.text)
    for role in ("manager", "owner"):
        refused = await browser.post("/console/staff/invite", data={
            "csrf_token": token, "nonce": f"n-{role}-0123456789", "role": role})
        assert refused.status == 403
    refused = await browser.post("/console/staff/invite", data={
        "csrf_token": token, "nonce": "n-other-store-0123", "role": "clerk", "store": "S002"})
    assert refused.status == 404
    assert not await StaffInvite.exists()


async def test_revoking_ends_the_employees_live_console_session(harness, browsers):
    h = harness
    clerk_browser, clerk = await browsers.as_role(h, "clerk")
    assert await clerk_browser.logged_in()
    browser, manager = await browsers.as_role(h, "manager")
    token = await browser.csrf()
    page = await browser.post(f"/console/staff/{clerk.id}/revoke", token=token)
    assert page.status == 200 and "已停用" in page.text
    assert f'data-staff="{clerk.id}"' in page.text  # the row, for htmx to swap in
    assert not (await Staff.get(id=clerk.id)).active
    assert not await clerk_browser.logged_in()  # at once, not at the next idle check
    assert (await ConsoleSession.get(staff_id=clerk.id)).end_reason == "revoked"
    entry = await AuditEntry.get(action="staff_revoke")
    assert entry.staff_id == manager.id and entry.detail.startswith(f"staff:{clerk.id}")
    # Twice: nothing more happens.
    again = await browser.post(f"/console/staff/{clerk.id}/revoke", token=token)
    assert again.status == 200
    assert await AuditEntry.filter(action="staff_revoke").count() == 1
    # The revoked account's chat commands stop too.
    assert "员工权限已停用" in await h.say(clerk.openid, "查询 13800000000")


async def test_a_role_change_ends_the_employees_sessions(harness, browsers):
    h = harness
    manager_browser, manager = await browsers.as_role(h, "manager")
    owner_browser, owner = await browsers.as_role(h, "owner")
    token = await owner_browser.csrf()
    page = await owner_browser.post(f"/console/staff/{manager.id}/role", token=token,
                                    data={"role": "clerk"})
    assert page.status == 200 and "角色已更改" in page.text
    assert (await Staff.get(id=manager.id)).role == "clerk"
    assert not await manager_browser.logged_in()
    assert (await ConsoleSession.get(staff_id=manager.id)).end_reason == "role_changed"
    entry = await AuditEntry.get(action="staff_role")
    assert (entry.staff_id, entry.before, entry.after) == (owner.id, {"role": "manager"},
                                                           {"role": "clerk"})
    again = await owner_browser.post(f"/console/staff/{manager.id}/role", token=token,
                                     data={"role": "clerk"})
    assert again.status == 200 and "角色未变" in again.text
    assert await AuditEntry.filter(action="staff_role").count() == 1
    # Nobody changes or revokes themselves here.
    assert (await owner_browser.post(f"/console/staff/{owner.id}/role", token=token,
                                     data={"role": "clerk"})).status == 403
    assert (await owner_browser.post(f"/console/staff/{owner.id}/revoke",
                                     token=token)).status == 403


async def test_a_manager_cannot_touch_another_stores_staff_or_promote(harness, browsers):
    h = harness
    there = await add_staff("o_there", "clerk", store="S002")
    colleague = await add_staff("o_colleague", "manager")
    clerk = await add_staff("o_clerk", "clerk")
    browser, _ = await browsers.as_role(h, "manager")
    token = await browser.csrf()
    assert (await browser.post(f"/console/staff/{there.id}/revoke", token=token)).status == 404
    assert (await browser.post(f"/console/staff/{there.id}/role", token=token,
                               data={"role": "clerk"})).status == 404
    assert (await browser.post("/console/staff/99999/revoke", token=token)).status == 404
    assert (await browser.post(f"/console/staff/{colleague.id}/revoke",
                               token=token)).status == 403
    for role in ("manager", "owner"):
        assert (await browser.post(f"/console/staff/{clerk.id}/role", token=token,
                                   data={"role": role})).status == 403
    assert {(s.id, s.role, s.active) for s in await Staff.filter(
        id__in=[there.id, colleague.id, clerk.id])} == {
        (there.id, "clerk", True), (colleague.id, "manager", True), (clerk.id, "clerk", True)}
    assert not await AuditEntry.filter(action__in=["staff_revoke", "staff_role"]).exists()


async def test_posts_without_the_token_or_from_elsewhere_change_nothing(harness, browsers):
    h = harness
    clerk = await add_staff("o_clerk", "clerk")
    browser, _ = await browsers.as_role(h, "owner")
    token = await browser.csrf()
    assert (await browser.post(f"/console/staff/{clerk.id}/revoke")).status == 403
    assert (await browser.post(f"/console/staff/{clerk.id}/revoke", token=token,
                               origin="https://evil.example")).status == 403
    assert (await browser.post("/console/staff/invite", data={
        "nonce": "n-0123456789abcdef", "role": "clerk"})).status == 403
    assert (await Staff.get(id=clerk.id)).active and not await StaffInvite.exists()


async def test_the_invite_code_of_a_scene_is_read_back(harness):
    assert staff_service.invite_code("invite:ABCD2345") == "ABCD2345"
    assert staff_service.invite_code("login:xyz") is None
    assert staff_service.invite_code(None) is None
    assert staff_service.invite_code_for("secret", "n1") == \
        staff_service.invite_code_for("secret", "n1")
    assert staff_service.invite_code_for("secret", "n1") != \
        staff_service.invite_code_for("secret", "n2")
