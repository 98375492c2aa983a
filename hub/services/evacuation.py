"""The evacuation count: how many people are inside each check-in group (zone), from the check-in journal.

    inside(group) = Σ persons of admitted entries − Σ persons of annulled admissions − Σ persons of exits

(an exit scan of a ticket carries the ticket's persons; an exit with no ticket counts one) over the
events scanned since ``since`` (default: the last 12 hours), clamped at 0. Admitted entries
flagged as conflicts (the same ticket admitted twice offline) count: those people did pass. People who
leave through an open gate during the release itself are not counted (the turnstile is free), so during
an evacuation the figure is the number inside when the gates opened.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from hub.services.context import HubContext
from hub.tables import checkin_events, checkin_groups
from protocol.reasons import Reason

WINDOW = 12 * 3600.0
FORMULA = ("inside = sum(persons of admitted entry events) - sum(persons of annulled events) "
           "- sum(persons of exit events, at least 1 each), per check-in group, over events scanned since 'since'; "
           "never below 0")


def count(ctx: HubContext, since: float | None = None) -> dict[str, Any]:
    since = ctx.clock() - WINDOW if since is None else since
    e = checkin_events
    admitted = func.sum(case(((e.c.reason == Reason.ADMITTED.value) & (e.c.direction == "entry"), e.c.persons),
                             else_=0))
    annulled = func.sum(case((e.c.reason == Reason.ANNULLED.value, e.c.persons), else_=0))
    exits = func.sum(case((e.c.direction == "exit", case((e.c.persons > 1, e.c.persons), else_=1)), else_=0))
    with ctx.db.read() as conn:
        names = {r.id: r.name for r in conn.execute(select(checkin_groups.c.id, checkin_groups.c.name))}
        rows = conn.execute(select(e.c.group_id, admitted, annulled, exits).where(e.c.scanned_at >= since)
                            .group_by(e.c.group_id)).all()
    by_group = {gid: (int(a or 0), int(n or 0), int(x or 0)) for gid, a, n, x in rows}
    groups = []
    for gid in sorted(set(names) | set(by_group)):
        a, n, x = by_group.get(gid, (0, 0, 0))
        groups.append({"group_id": gid, "name": names.get(gid), "admitted": a, "annulled": n, "exits": x,
                       "inside": max(0, a - n - x)})
    return {"formula": FORMULA, "since": since, "groups": groups, "total_inside": sum(g["inside"] for g in groups)}
