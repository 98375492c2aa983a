"""The console's Users and audit page (issue 12, page 5) in a real headless Chromium against a real hub.

An admin creates a user, gives it a role, resets its password; the user logs in with the new one; the
admin disables it (the user's open page is sent back to the log-in, and its log-in is refused), is
refused disabling the last admin, and filters the audit log. Screenshots at 1280x800 and on a tablet go to
``test-artifacts/console/users/``.
"""

from __future__ import annotations

import re
from typing import Any

from tests.support.browser import require_chromium
from tests.support.console import DESKTOP, TABLET, console_browser, console_page, login, shot
from tests.support.processes import HubProcess


def test_an_admin_creates_a_user_sets_its_role_resets_and_disables_it_and_reads_the_audit_log(
        hub_process: HubProcess) -> None:
    require_chromium()
    from playwright.sync_api import expect

    hub = hub_process
    errors: list[str] = []
    with console_browser() as browser:
        admin = console_page(browser, hub, "admin", username="chief", next_path="/console/users", errors=errors)
        admin.wait_for_url(hub.base_url + "/console/users")
        expect(admin.locator("h1")).to_have_text("用户与审计 Users and audit")
        expect(admin.locator("#user-rows tr", has_text="chief")).to_contain_text("启用 Enabled")

        # Create an usher with the viewer role.
        admin.fill("#new-username", "usher1")
        admin.fill("#new-password", "first-password-1")
        admin.select_option("#new-role", "viewer")
        admin.click("#create-button")
        expect(admin.locator("#create-msg")).to_contain_text("Created user usher1 (viewer)")
        row = admin.locator("#user-rows tr", has_text="usher1")
        expect(row).to_contain_text("观察员 Viewer")
        shot(admin, "users", "01-created")

        # A name that exists already: the page says so and what to do.
        admin.fill("#new-username", "usher1")
        admin.fill("#new-password", "first-password-1")
        admin.click("#create-button")
        expect(admin.locator("#create-msg")).to_contain_text("already exists; choose another name")

        # Make it a security user.
        row.get_by_role("button", name="管理 Manage usher1").click()
        expect(admin.locator("#manage-title")).to_contain_text("usher1")
        expect(admin.locator("#edit-role")).to_be_focused()
        admin.select_option("#edit-role", "security")
        admin.click("#save-role")
        expect(admin.locator("#manage-msg")).to_contain_text("usher1 is now security")
        expect(row).to_contain_text("安全员 Security")
        user_id = next(u["id"] for u in hub.call("GET", "/users") if u["username"] == "usher1")

        # Reset its password: two different entries are refused first.
        admin.fill("#reset-password", "second-password-2")
        admin.fill("#reset-password2", "second-password-X")
        admin.click("#reset-button")
        expect(admin.locator("#manage-msg")).to_contain_text("The two passwords differ")
        admin.fill("#reset-password2", "second-password-2")
        admin.click("#reset-button")
        expect(admin.locator("#manage-msg")).to_contain_text("every session of theirs has ended")
        shot(admin, "users", "02-password-reset")

        # The usher logs in with the new password and sees its own page.
        usher = browser.new_context(viewport=TABLET, locale="zh-CN").new_page()
        usher.on("pageerror", lambda exc: errors.append(f"usher pageerror: {exc}"))
        login(usher, hub, "usher1", "second-password-2")
        expect(usher.locator("#who")).to_contain_text("usher1")

        # Disabling asks first, naming the user; cancelling changes nothing.
        admin.click("#toggle-button")
        dialog = admin.locator("#confirm")
        expect(dialog).to_be_visible()
        expect(admin.locator("#confirm-title")).to_contain_text("usher1")
        admin.click("#confirm-cancel")
        expect(dialog).to_be_hidden()
        assert not next(u for u in hub.call("GET", "/users") if u["id"] == user_id)["disabled"]
        admin.click("#toggle-button")
        admin.click("#confirm-ok")
        expect(admin.locator("#manage-msg")).to_contain_text("usher1 is disabled")
        expect(row).to_contain_text("已停用 Disabled")
        expect(admin.locator("#toggle-button")).to_have_text("启用 Enable")
        shot(admin, "users", "03-disabled")

        # The usher's open page loses its session at once; logging in again is refused, and says why.
        usher.reload()
        expect(usher.locator("#login-view")).to_be_visible()
        usher.fill("#username", "usher1")
        usher.fill("#password", "second-password-2")
        usher.click("#login-button")
        expect(usher.locator("#login-error")).to_contain_text("usher1 is disabled; ask an admin to enable it")
        expect(usher.locator("#login-error")).to_contain_text("已被停用")
        shot(usher, "users", "04-disabled-login-refused-tablet")

        # The audit log, filtered to what happened to the usher.
        admin.fill("#f-action", "user.")
        admin.fill("#f-target", f"user:{user_id}")
        admin.click("#audit-search")
        rows = admin.locator("#audit-rows tr")
        expect(rows).to_have_count(4)
        expect(rows.nth(0)).to_contain_text("user.disable")
        expect(rows.nth(1)).to_contain_text("user.password")
        expect(rows.nth(2)).to_contain_text("user.change")
        expect(rows.nth(3)).to_contain_text("user.create")
        expect(admin.locator("#audit-msg")).to_contain_text("Showing 4 entries")
        admin.fill("#f-username", "nobody")
        admin.click("#audit-search")
        expect(admin.locator("#audit-rows")).to_contain_text("No entries match these filters")
        admin.fill("#f-username", "")
        admin.fill("#f-target", "")
        admin.fill("#f-action", "auth.login_disabled")
        admin.click("#audit-search")
        expect(rows).to_have_count(1)
        expect(rows.nth(0)).to_contain_text("usher1")
        shot(admin, "users", "05-audit-filtered")

        # Everything done to users, as the API has it.
        admin.fill("#f-action", "user.")
        admin.click("#audit-search")
        expect(rows).to_have_count(len(_audit(hub, action="user.")))

        admin.set_viewport_size(TABLET)
        shot(admin, "users", "06-tablet")
        admin.set_viewport_size(DESKTOP)

        # Not for any other role.
        ops = console_page(browser, hub, "ops", next_path="", errors=errors)
        ops.goto(hub.base_url + "/console/users")
        expect(ops.locator("main [role=alert]")).to_contain_text("it is for: admin")
        shot(ops, "users", "07-not-for-ops")

        # The hub keeps an enabled admin: with the bootstrap admin disabled (its API session ends here, so
        # this comes last), chief is the last one and the page says why it cannot be disabled.
        admin_id = next(u["id"] for u in hub.call("GET", "/users") if u["username"] == "admin")
        hub.call("POST", f"/users/{admin_id}/disable")
        admin.click("#reload-users")
        admin.locator("#user-rows tr", has_text="chief").get_by_role("button").click()
        admin.click("#toggle-button")
        admin.click("#confirm-ok")
        expect(admin.locator("#manage-msg")).to_contain_text("it is the last enabled admin")
        expect(admin.locator("#manage-msg")).to_contain_text("最后一个启用的管理员")
        admin.click("#close-manage")
        expect(admin.locator("#manage")).to_be_hidden()

    # the refusals this test asks for are logged by the browser as failed loads; anything else is a bug
    assert [e for e in errors if not re.search(r"status of (401|403|409)", e)] == [], errors


def _audit(hub: HubProcess, **filters: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = hub.call("GET", "/audit", params=filters)
    return rows
