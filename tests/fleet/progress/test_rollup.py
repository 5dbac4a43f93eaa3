"""The progress figures, rolled up in the database, against a straightforward count in Python
of what was sent, on SQLite and PostgreSQL: a seeded tree of a province, an agency, districts
and communes across the reform of 1/7/2025 (communes move from their district to the province;
districts end), five months around it; units with dossiers received one per row (rates by the
month of the received date, results ``-KQ<n>``, supplements that reopen a dossier, mistyped
codes that match nothing by the month of their first component in the fleet's zone) and units
with only monthly counts (digitized by the month of the first accepted page in the zone, pages
near midnight of a month's last day); every unit's own and subtree figures, month by month,
its status against its tier's target, the tier totals and the unattributed dossiers, for the
whole tree, a subtree and a single month."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from fleet.display import DEFAULT_ZONE
from fleet.progress import periods
from fleet.progress.rates import DEFAULT_TARGETS
from protocol.messages import Message, PageCaptured
from tests.fleet.dossiers.conftest import closed, load_units, page, send, status

MONTHS = ["2025-05", "2025-06", "2025-07", "2025-08", "2025-09"]
AGENCY = "000.00.12.H99"
EXTRA_UNITS = f"{AGENCY},[THỬ - mã giả định] Sở Tư pháp,agency,99,2004-01-01,\n"
BY_ROWS = {"99001", "99004", "99002"}
"""Units whose received dossiers are imported one per row (99002 exists until 30/6/2025)."""
COUNTED = ["99", AGENCY, "991", "99003", "99005"]
"""Units with only monthly counts (991 and 99005 until 30/6/2025)."""
REFORM = date(2025, 7, 1)
TIER = {"99": "province", AGENCY: "agency", "991": "district", "992": "district", "99001": "commune",
        "99002": "commune", "99003": "commune", "99004": "commune", "99005": "commune"}
Figures = list[int]  # received, digitized, results, unmatched


def _valid(unit: str, day: date) -> bool:
    return day < REFORM or unit not in ("991", "992", "99002", "99005")


def _parent(unit: str, month: str) -> str | None:
    """The sample tree's parent in a month (the reform starts on a month's first day)."""
    before = periods.first_day(month) < REFORM
    if unit == "99":
        return None
    if unit in ("991", "992", AGENCY):
        return "99"
    if not before:
        return "99"
    return "991" if unit in ("99001", "99002", "99003") else "992"


def _kiosk(unit: str) -> str:
    return f"kiosk-{unit.replace('.', '').lower()}"


class World:
    """What was sent, and the figures a plain count of it gives."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.messages: list[Message] = []
        self.received: list[dict[str, Any]] = []
        self.counts: list[dict[str, Any]] = []
        self.own: dict[tuple[str, str], Figures] = defaultdict(lambda: [0, 0, 0, 0])
        zone = DEFAULT_ZONE
        first_day, last_day = periods.first_day(MONTHS[0]), periods.last_day(MONTHS[-1])
        days = (last_day - first_day).days + 1
        self.messages += [status(_kiosk(u), u, datetime(2025, 4, 1, tzinfo=UTC)) for u in TIER]
        self.messages.append(status("kiosk-none", None, datetime(2025, 4, 1, tzinfo=UTC)))
        n = 0
        # Dossiers received one per row.
        for unit in sorted(BY_ROWS):
            for _ in range(40):
                got = first_day + timedelta(days=rng.randrange(days))
                if not _valid(unit, got):
                    continue
                n += 1
                code = f"000.00.00.H99-{got:%y%m%d}-{n:04d}"
                self.received.append({"code": code, "unit_code": unit, "received_date": got.isoformat()})
                cell = self.own[(unit, f"{got:%Y-%m}")]
                cell[0] += 1
                start = datetime.combine(got, datetime.min.time(), UTC) + timedelta(hours=rng.randrange(1, 60))
                kiosk = _kiosk(unit)
                way = rng.randrange(6)
                component = False
                if way == 0:  # accepted pages, two of them
                    self.messages += [page(kiosk, code, start), page(kiosk, code.lower(), start + timedelta(minutes=3))]
                    component = True
                elif way == 1:  # a component document, then a supplement that reopens it weeks later
                    self.messages.append(closed(kiosk, code, [f"{code}.1.pdf"], start))
                    later = start + timedelta(days=rng.randrange(20, 50))
                    self.messages += [page(kiosk, code, later), closed(kiosk, code, [f"{code}.2.pdf"], later)]
                    component = True
                elif way == 2:  # rejected or dropped only: not digitized
                    self.messages.append(page(kiosk, code, start, ok=False))
                elif way == 3:  # a result page only: a result, not digitized
                    self.messages.append(page(kiosk, f"{code}-KQ1", start))
                    cell[2] += 1
                if way in (0, 1) and rng.random() < 0.5:  # and its result, as a document or a page
                    late = start + timedelta(days=rng.randrange(1, 40))
                    self.messages.append(closed(kiosk, code, [f"{code}-KQ1.pdf"], late) if rng.random() < 0.5
                                         else page(kiosk, f"{code}-KQ(1)", late))
                    cell[2] += 1
                cell[1] += component
        # Mistyped codes: digitized, received nowhere; counted apart by the zone's month of the
        # first component, on the digitizing unit's row when that unit has rows.
        for j in range(12):
            unit = sorted(BY_ROWS)[j % 3]
            month = MONTHS[j % len(MONTHS)] if unit != "99002" else MONTHS[0]  # in May: June's is still its
            at = datetime.combine(periods.last_day(month), datetime.min.time(), UTC) + timedelta(
                hours=rng.choice((10, 16, 17, 18)))  # 17:00 UTC on a last day is the next month in Vietnam
            code = f"000.00.00.H9G-{j:04d}"
            if rng.random() < 0.5:
                self.messages.append(page(_kiosk(unit), code, at))
            else:
                self.messages.append(closed(_kiosk(unit), code, [f"{code}.1.pdf"], at))
            local = periods.of(at, zone)
            if local in MONTHS and _valid(unit, periods.first_day(local)):
                self.own[(unit, local)][3] += 1
        # Units with monthly counts: the count, and dossiers digitized by their first accepted page.
        for unit in COUNTED:
            for month in MONTHS:
                if not _valid(unit, periods.first_day(month)):
                    continue
                count = rng.randrange(5, 30)
                self.counts.append({"unit_code": unit, "period": month, "received": count})
                self.own[(unit, month)][0] += count
                ends = _valid(unit, periods.last_day(month) + timedelta(days=1))
                for k in range(rng.randrange(0, 12)):
                    # 17:00 and 20:00 UTC on a last day are the next month in Vietnam (not for a
                    # unit that ends with the month: its dossiers stay in its own months).
                    hour = rng.choice((3, 16, 17, 20) if ends else (3, 16))
                    at = datetime.combine(periods.last_day(month), datetime.min.time(), UTC) + timedelta(
                        hours=hour, minutes=k)
                    code = f"C-{unit}-{month}-{k}"
                    if rng.random() < 0.7:  # accepted, and seen again later: counted once, at its first page
                        self.messages += [page(_kiosk(unit), code, at),
                                          page(_kiosk(unit), code, at + timedelta(days=3))]
                        first_seen: datetime | None = at
                    else:  # rejected two days before; accepted then, or never
                        self.messages.append(page(_kiosk(unit), code, at - timedelta(days=2), ok=False))
                        first_seen = at if rng.random() < 0.5 else None
                        if first_seen is not None:
                            self.messages.append(page(_kiosk(unit), code, at))
                    if first_seen is None:
                        continue
                    local = periods.of(first_seen, zone)
                    if local in MONTHS and _valid(unit, periods.first_day(local)):
                        self.own[(unit, local)][1] += 1
        # A device with no unit: unattributed.
        for k in range(3):
            self.messages.append(page("kiosk-none", f"N-{k}", datetime(2025, 8, 10 + k, 3, tzinfo=UTC)))
        # The first accepted page of each code as written (what the counts basis reads).
        units = {_kiosk(u): u for u in TIER}
        self.first_pages: dict[str, tuple[datetime, str | None]] = {}
        for message in self.messages:
            if isinstance(message, PageCaptured) and message.page.dossier_code and message.page.quality \
                    and message.page.quality.ok:
                seen = (message.page.captured_at, units.get(message.device_id))
                self.first_pages[message.page.dossier_code] = min(
                    self.first_pages.get(message.page.dossier_code, seen), seen, key=lambda s: s[0])

    def unattributed(self, months: list[str]) -> int:
        """Dossiers first digitized in the months by a device with no unit, or a unit not in the
        months' tree."""
        first, last = periods.first_day(months[0]), periods.last_day(months[-1])
        return sum(1 for at, unit in self.first_pages.values()
                   if periods.of(at, DEFAULT_ZONE) in months
                   and (unit is None or not (_valid(unit, first) or _valid(unit, last))))

    def expected(self, months: list[str], root: str | None) -> dict[str, dict[str, Any]]:
        """Every unit valid in ``months`` under ``root``: own, total and trend, from a plain
        walk of each month's tree."""
        first, last = periods.first_day(months[0]), periods.last_day(months[-1])
        valid = [u for u in TIER if _valid(u, first) or _valid(u, last)]
        out: dict[str, dict[str, Any]] = {}
        for unit in valid:
            trend = []
            for month in months:
                below = [0, 0, 0, 0]
                for other in valid:
                    chain: list[str] = []
                    node: str | None = other
                    while node is not None and node in valid:
                        chain.append(node)
                        if node == root:
                            break
                        node = _parent(node, month)
                    if unit in chain:
                        below = [a + b for a, b in zip(below, self.own.get((other, month), [0, 0, 0, 0]), strict=True)]
                trend.append(below)
            own = [sum(self.own.get((unit, m), [0, 0, 0, 0])[i] for m in months) for i in range(4)]
            total = [sum(t[i] for t in trend) for i in range(4)]
            out[unit] = {"own": own, "total": total, "trend": trend,
                         "basis": "dossiers" if unit in BY_ROWS else "counts"}
        if root is not None:
            keep = {root}
            for unit in valid:
                above = _parent(unit, months[-1])
                while above is not None:
                    if above == root:
                        keep.add(unit)
                    above = _parent(above, months[-1])
            out = {u: v for u, v in out.items() if u in keep}
        return out


def _figures(f: dict[str, Any]) -> Figures:
    return [f["received"], f["digitized"], f["results"], f["unmatched"]]


def _status(own: Figures, tier: str) -> str:
    received, digitized = own[0], own[1]
    if not received:
        return "no_data"
    return "met" if min(digitized, received) / received + 1e-12 >= DEFAULT_TARGETS[tier] else "behind"


def test_the_rollup_matches_a_plain_count(api: TestClient) -> None:
    world = World(seed=13)
    load_units(api, EXTRA_UNITS)
    assert api.post("/api/v1/dossiers/received", json=world.received).status_code == 200
    assert api.post("/api/v1/progress/received", json=world.counts).status_code == 200
    send(api, world.messages)
    send(api, world.messages[::-1])  # delivered twice, in another order: nothing changes
    assert any(u for (u, _), f in world.own.items() if f[3])  # the traps are in the data
    # Each unit with rows has some in every range checked: its basis is "dossiers" throughout.
    received_in = {(r["unit_code"], r["received_date"][:7]) for r in world.received}
    checked = 0
    for months, root in ((MONTHS, "99"), (MONTHS, None), (MONTHS[:2], "991"), (["2025-07"], "99"),
                         (["2025-06"], None)):
        params = {"from": months[0], "to": months[-1], **({"unit": root} if root else {})}
        response = api.get("/api/v1/progress", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        got = {u["code"]: u for u in body["units"]}
        expected = world.expected(months, root)
        assert all(any((u, m) in received_in for m in months) for u in BY_ROWS if u in expected), params
        assert sorted(got) == sorted(expected), params
        assert {c: [_figures(t) for t in got[c]["trend"]] for c in expected} == {
            c: w["trend"] for c, w in expected.items()}, params
        for code, want in expected.items():
            unit = got[code]
            assert _figures(unit["own"]) == want["own"], (params, code, "own")
            assert _figures(unit["total"]) == want["total"], (params, code, "total")
            assert [_figures(t) for t in unit["trend"]] == want["trend"], (params, code, "trend")
            assert unit["basis"] == want["basis"], (params, code)
            assert unit["target"] == DEFAULT_TARGETS[TIER[code]] and unit["status"] == _status(want["own"], TIER[code])
            checked += 1
        for tier in body["tiers"]:
            rows = [want for code, want in expected.items() if TIER[code] == tier["tier"]]
            assert _figures(tier["figures"]) == [sum(w["own"][i] for w in rows) for i in range(4)], (params, tier)
            assert (tier["units"], tier["met"], tier["behind"]) == (
                len(rows), sum(_status(w["own"], tier["tier"]) == "met" for w in rows),
                sum(_status(w["own"], tier["tier"]) == "behind" for w in rows))
        assert body["unattributed"] == world.unattributed(months) and isinstance(body["unattributed"], int), params
    assert checked > 20
    assert world.unattributed(MONTHS) == 3 and world.unattributed(["2025-07"]) > 3  # the traps are there
