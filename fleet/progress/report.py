"""The periodic report ("Báo cáo định kỳ") for the Chairman: for a range of months and a unit's
subtree, a short summary, a table per unit (received, digitized, rate, target, status, the rate
of the previous period beside it), totals per tier, the whole against the previous period of
the same length, the procedures with the most dossiers, who digitized (the share of the postal
service's staff), and the devices with their availability; under the header of a Vietnamese
administrative report (issuing agency and number, the national name and motto, place and date)
and over its recipients and signature block. Exported as XLSX (openpyxl) and PDF (fpdf2 with a
DejaVu/Noto TrueType font, so Vietnamese renders and can be searched and copied).

Availability of a device: the share of hours of the range (from when it was first seen, up to
now) in which it sent at least one telemetry report.

>>> from datetime import UTC, datetime
>>> from fleet.db import make_engine, migrate, session_factory
>>> from fleet.progress.units import import_units, sample_csv
>>> engine = make_engine("sqlite://"); migrate(engine)
>>> with session_factory(engine)() as session:
...     _ = import_units(session, sample_csv())
...     report = build_report(session, "2026-01", "2026-03", "99", now=datetime(2026, 4, 2, tzinfo=UTC))
>>> to_xlsx(report)[:2], to_pdf(report)[:5]
(b'PK', b'%PDF-')
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.db import hour_bucket
from fleet.display import DEFAULT_ZONE, local_time, zone
from fleet.dossiers.reconcile import Procedure, by_operator, by_operator_id, top_procedures
from fleet.errors import FleetError, NotFound
from fleet.models import Device, TelemetrySample, is_online
from fleet.progress import periods
from fleet.progress.rates import Figures, Progress, progress
from fleet.spreadsheet import values_only_bytes

log = logging.getLogger(__name__)

TIER_VI = {"province": "Tỉnh", "agency": "Cơ quan cấp tỉnh", "district": "Huyện", "commune": "Xã"}
STATUS_VI = {"met": "Đạt", "behind": "Chưa đạt", "no_data": "Chưa có số liệu"}
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/noto"),
             Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts"))
FONT_NAMES = (("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"), ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf"))


OPERATOR_VI = {"unit_staff": "Cán bộ đơn vị", "postal_staff": "Nhân viên bưu điện",
               "citizen": "Người dân tự quét", None: "Chưa ghi nhận"}
NATIONAL_NAME = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
MOTTO = "Độc lập - Tự do - Hạnh phúc"


class FontMissing(FleetError, FileNotFoundError):
    """No TrueType font with Vietnamese letters was found for the PDF."""


@dataclass(frozen=True)
class AdminHeader:
    """What the header and the end of an administrative report say (Decree 30/2020/NĐ-CP): the
    issuing agency (under its superior, when given) and the report's number on the left, the
    national name and motto with the place and date on the right; at the end the recipients
    and the signature block. Left empty, the number and the signer's name are blanks to fill
    in by hand, and the agency is the report's root unit.

    >>> AdminHeader(number="12/BC-UBND", place="Sơn Thủy").number_line
    'Số: 12/BC-UBND'
    """

    agency: str = ""
    parent_agency: str = ""
    number: str = ""
    place: str = ""
    recipients: tuple[str, ...] = ("Như trên;", "Lưu: VT.")
    signer_title: str = "THỦ TRƯỞNG CƠ QUAN"
    signer: str = ""

    @property
    def number_line(self) -> str:
        return "Số: " + (self.number or "        /BC-")


@dataclass
class DeviceAvailability:
    device_id: str
    unit_code: str | None
    online: bool
    last_seen: datetime
    agent_version: str | None
    hours_up: int
    hours: int

    @property
    def availability(self) -> float | None:
        return self.hours_up / self.hours if self.hours else None


@dataclass
class PeriodicReport:
    progress: Progress
    devices: list[DeviceAvailability]
    generated_at: datetime
    time_zone: ZoneInfo = field(default_factory=lambda: zone(DEFAULT_ZONE))
    """Where the report's times are shown (the fleet's ``time_zone``)."""
    previous: Progress | None = None
    """The same subtree over the range of the same length just before (None: the root did not
    exist then)."""
    operators: dict[str | None, int] = field(default_factory=dict)
    """Digitized dossiers received in the range by who digitized them (dossiers basis only)."""
    operator_ids: list[tuple[str, str, int]] = field(default_factory=list)
    """The same per counter operator: (opaque id, kind, dossiers), most first."""
    procedures: list[Procedure] = field(default_factory=list)
    """The procedures with the most dossiers received in the range (dossiers basis only)."""
    header: AdminHeader = field(default_factory=AdminHeader)

    @property
    def agency(self) -> str:
        return self.header.agency or self.root_name.upper()

    @property
    def dated(self) -> str:
        day = self.generated_at.astimezone(self.time_zone)
        return f"{self.header.place or '…………'}, ngày {day:%d} tháng {day:%m} năm {day:%Y}"

    def previous_rate(self, code: str) -> float | None:
        if self.previous is None or code not in self.previous.units:
            return None
        return self.previous.units[code].own.rate

    @property
    def postal_share(self) -> float | None:
        """The share of the digitized dossiers the postal service's staff digitized."""
        digitized = sum(self.operators.values())
        return self.operators.get("postal_staff", 0) / digitized if digitized else None

    @property
    def root_name(self) -> str:
        root = self.progress.root
        return self.progress.units[root].name if root is not None else "Toàn bộ đơn vị"

    @property
    def mean_availability(self) -> float | None:
        values = [d.availability for d in self.devices if d.availability is not None]
        return sum(values) / len(values) if values else None


def device_availability(session: Session, unit_codes: set[str], start: str, end: str, now: datetime,
                        heartbeat_timeout_s: float, zone_name: str = DEFAULT_ZONE) -> list[DeviceAvailability]:
    lo, hi = periods.utc_bounds(start, end, zone_name)
    hi = min(hi, now)
    devices = list(session.scalars(select(Device).where(Device.unit_code.in_(unit_codes)).order_by(Device.id)))
    if not devices:
        return []
    hour = hour_bucket(TelemetrySample.ts, session.get_bind().dialect.name)
    query = (select(TelemetrySample.device_id, func.count(func.distinct(hour)))
             .where(TelemetrySample.device_id.in_([d.id for d in devices]),
                    TelemetrySample.ts >= lo, TelemetrySample.ts < hi)
             .group_by(TelemetrySample.device_id))
    up = {device_id: int(n) for device_id, n in session.execute(query)}
    out = []
    for d in devices:
        begin = max(lo, d.first_seen.replace(minute=0, second=0, microsecond=0))
        hours = max(0, -(-int((hi - begin) / timedelta(seconds=1)) // 3600))
        out.append(DeviceAvailability(d.id, d.unit_code, is_online(d, now, heartbeat_timeout_s), d.last_seen,
                                      d.agent_version, min(up.get(d.id, 0), hours), hours))
    return out


def build_report(session: Session, start: str, end: str, root: str | None, *, now: datetime,
                 heartbeat_timeout_s: float = 180.0, time_zone: str = DEFAULT_ZONE,
                 header: AdminHeader | None = None) -> PeriodicReport:
    figures = progress(session, start, end, root, time_zone)
    devices = device_availability(session, set(figures.units), start, end, now, heartbeat_timeout_s, time_zone)
    before_start, before_end = periods.previous(start, end)
    try:
        before: Progress | None = progress(session, before_start, before_end, root, time_zone)
    except NotFound:  # the root unit did not exist yet
        before = None
    units = set(figures.units) if root is not None else None
    return PeriodicReport(progress=figures, devices=devices, generated_at=now, time_zone=zone(time_zone),
                          previous=before, operators=by_operator(session, units, start, end),
                          operator_ids=by_operator_id(session, units, start, end),
                          procedures=top_procedures(session, units, start, end), header=header or AdminHeader())


def vi_number(n: int) -> str:
    """1234567 -> '1.234.567' (Vietnamese thousands separator)."""
    return f"{n:,}".replace(",", ".")


def vi_percent(rate: float | None) -> str:
    """0.4567 -> '45,7%'; None -> '–'."""
    return "–" if rate is None else f"{rate * 100:.1f}%".replace(".", ",")


def _month_vi(period: str) -> str:
    return f"{period[5:]}/{period[:4]}"


def period_vi(report: PeriodicReport | Progress) -> str:
    p = report.progress if isinstance(report, PeriodicReport) else report
    return _month_vi(p.start) if p.start == p.end else f"{_month_vi(p.start)} – {_month_vi(p.end)}"


def vi_points(now: float | None, before: float | None) -> str:
    """The change between two rates in percentage points: '+3,5 điểm %'; '–' when one is missing."""
    if now is None or before is None:
        return "–"
    return f"{(now - before) * 100:+.1f} điểm %".replace(".", ",")


def comparison_rows(report: PeriodicReport) -> list[tuple[str, str, str, str]]:
    """(what, this period, the previous one, the change) for the whole subtree."""
    now, before = report.progress.total, report.previous.total if report.previous else Figures()
    return [("Hồ sơ tiếp nhận", vi_number(now.received), vi_number(before.received),
             f"{now.received - before.received:+d}"),
            ("Hồ sơ đã số hóa", vi_number(now.digitized), vi_number(before.digitized),
             f"{now.digitized - before.digitized:+d}"),
            ("Tỷ lệ số hóa", vi_percent(now.rate), vi_percent(before.rate), vi_points(now.rate, before.rate)),
            ("Kết quả giải quyết đã số hóa", vi_number(now.results), vi_number(before.results),
             f"{now.results - before.results:+d}")]


def operator_rows(report: PeriodicReport) -> list[tuple[str, int, float | None]]:
    """(who, dossiers, share) for every kind of operator, those not said last."""
    total = sum(report.operators.values())
    order = ["unit_staff", "postal_staff", "citizen", None]
    kinds = [k for k in order if k in report.operators] + [k for k in report.operators if k not in order]
    return [(OPERATOR_VI.get(k, str(k)), report.operators[k], report.operators[k] / total if total else None)
            for k in kinds]


def summary_lines(report: PeriodicReport) -> list[str]:
    """The few sentences on top of the report."""
    p = report.progress
    units = list(p.units.values())
    met = sum(u.status == "met" for u in units)
    behind = [u for u in units if u.status == "behind"]
    online = sum(d.online for d in report.devices)
    lines = [
        f"Kỳ báo cáo: {period_vi(report)}. Phạm vi: {report.root_name}.",
        f"Tổng số hồ sơ tiếp nhận: {vi_number(p.total.received)}; đã số hóa: {vi_number(p.total.digitized)}; "
        f"tỷ lệ số hóa: {vi_percent(p.total.rate)}.",
        f"Số đơn vị đạt chỉ tiêu: {met}/{len(units)}; chưa đạt: {len(behind)}.",
        f"Thiết bị: {len(report.devices)} (đang hoạt động: {online}); mức sẵn sàng bình quân: "
        f"{vi_percent(report.mean_availability)}.",
    ]
    if behind:
        worst = sorted(behind, key=lambda u: (u.own.rate or 0.0) - u.target)[:5]
        lines.append("Đơn vị chậm nhất so với chỉ tiêu: " + "; ".join(
            f"{u.name} ({vi_percent(u.own.rate)}/{vi_percent(u.target)})" for u in worst) + ".")
    if report.previous is not None:
        before = report.previous.total
        lines.append(f"Kỳ trước ({period_vi(report.previous)}): tiếp nhận {vi_number(before.received)}; đã số hóa "
                     f"{vi_number(before.digitized)}; tỷ lệ {vi_percent(before.rate)} (thay đổi "
                     f"{vi_points(p.total.rate, before.rate)}).")
    if report.operators:
        postal = report.operators.get("postal_staff", 0)
        lines.append(f"Hồ sơ đã số hóa do nhân viên bưu điện thực hiện: {vi_number(postal)} "
                     f"({vi_percent(report.postal_share)}); " + "; ".join(
                         f"{who.lower()}: {vi_number(n)}" for who, n, _ in operator_rows(report)
                         if who != OPERATOR_VI["postal_staff"]) + ".")
    if report.procedures:
        lines.append("Thủ tục có nhiều hồ sơ nhất: " + "; ".join(
            f"{t.code or 'không rõ mã'} ({vi_number(t.received)} hồ sơ)" for t in report.procedures[:3]) + ".")
    if p.unattributed:
        lines.append(f"Hồ sơ đã số hóa chưa gắn được với đơn vị: {vi_number(p.unattributed)}.")
    by_rows = [u for u in units if u.basis == "dossiers"]
    if by_rows:
        lines.append(
            f"Đối chiếu theo từng hồ sơ ({len(by_rows)}/{len(units)} đơn vị): kết quả giải quyết đã số hóa "
            f"{vi_number(p.total.results)} ({vi_percent(p.total.result_rate)}); hồ sơ số hóa không khớp hồ sơ "
            f"tiếp nhận nào (không tính vào tỷ lệ): {vi_number(p.total.unmatched)}. Các đơn vị còn lại chỉ có "
            "số tổng hợp theo tháng: hồ sơ đã số hóa đếm theo trang đầu tiên đạt yêu cầu, tỷ lệ tối đa 100%.")
    return lines


TITLE = "BÁO CÁO ĐỊNH KỲ TIẾN ĐỘ SỐ HÓA HỒ SƠ, KẾT QUẢ GIẢI QUYẾT THỦ TỤC HÀNH CHÍNH"
UNIT_HEADER = ("Mã", "Đơn vị", "Cấp", "Tiếp nhận", "Đã số hóa", "Tỷ lệ", "Chỉ tiêu", "Kết quả",
               "Tiếp nhận (cả cấp dưới)", "Số hóa (cả cấp dưới)", "Tỷ lệ (cả cấp dưới)")
UNIT_HEADER_XLSX = (*UNIT_HEADER, "Kết quả giải quyết đã số hóa", "Số hóa không khớp hồ sơ tiếp nhận",
                    "Cơ sở số liệu", "Tỷ lệ kỳ trước")
COMPARISON_HEADER = ("Chỉ tiêu", "Kỳ này", "Kỳ trước", "Thay đổi")
PROCEDURE_HEADER = ("Mã thủ tục", "Tiếp nhận", "Đã số hóa", "Tỷ lệ")
OPERATOR_HEADER = ("Người thực hiện số hóa", "Hồ sơ", "Tỷ trọng")
OPERATOR_ID_HEADER = ("Mã cán bộ", "Loại", "Hồ sơ đã số hóa")
BASIS_VI = {"dossiers": "Từng hồ sơ", "counts": "Số tổng hợp"}
TIER_HEADER = ("Cấp", "Số đơn vị", "Tiếp nhận", "Đã số hóa", "Tỷ lệ", "Chỉ tiêu", "Đạt", "Chưa đạt")
DEVICE_HEADER = ("Thiết bị", "Đơn vị", "Trạng thái", "Lần cuối liên lạc", "Phiên bản", "Giờ hoạt động",
                 "Số giờ trong kỳ", "Mức sẵn sàng")


def to_xlsx(report: PeriodicReport) -> bytes:
    """The report as an Excel workbook: sheet "Báo cáo" (the administrative header, summary,
    units, tiers, the previous period, procedures, who digitized, recipients and signature),
    sheet "Thiết bị"."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill

    bold = Font(bold=True)
    center = Alignment(horizontal="center")
    behind_fill = PatternFill("solid", fgColor="F8D7DA")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Báo cáo"
    header = report.header
    left = [header.parent_agency.upper(), report.agency] if header.parent_agency else [report.agency]
    left.append(header.number_line)
    right = [NATIONAL_NAME, MOTTO, report.dated]
    for i in range(max(len(left), len(right))):
        row: list[object] = [None] * 14
        row[0], row[7] = (left[i] if i < len(left) else None), (right[i] if i < len(right) else None)
        sheet.append(row)
        top = sheet.max_row
        sheet.cell(top, 1).font = Font(bold=i < len(left) - 1)
        sheet.cell(top, 8).font = Font(bold=i < 2, italic=i == 2, underline="single" if i == 1 else None)
        sheet.cell(top, 8).alignment = center
    sheet.append([])
    sheet.append([TITLE])
    sheet.cell(sheet.max_row, 1).font = Font(bold=True, size=13)
    for line in summary_lines(report):
        sheet.append([line])
    sheet.append([])
    sheet.append(list(UNIT_HEADER_XLSX))
    for cell in sheet[sheet.max_row]:
        cell.font = bold
    for u in report.progress.units.values():
        sheet.append([u.code, "    " * u.depth + u.name, TIER_VI[u.tier], u.own.received, u.own.digitized,
                      u.own.rate, u.target, STATUS_VI[u.status], u.total.received, u.total.digitized, u.total.rate,
                      u.own.results, u.own.unmatched, BASIS_VI[u.basis], report.previous_rate(u.code)])
        row_n = sheet.max_row
        for col in ("F", "G", "K", "O"):
            sheet[f"{col}{row_n}"].number_format = "0.0%"
        if u.status == "behind":
            for cell in sheet[row_n]:
                cell.fill = behind_fill

    def section(title: str, heading: tuple[str, ...]) -> None:
        sheet.append([])
        sheet.append([title])
        sheet.cell(sheet.max_row, 1).font = bold
        sheet.append(list(heading))
        for cell in sheet[sheet.max_row]:
            cell.font = bold

    section("Tổng hợp theo cấp", TIER_HEADER)
    for t in report.progress.tiers:
        sheet.append([TIER_VI[t.tier], t.units, t.figures.received, t.figures.digitized, t.figures.rate, t.target,
                      t.met, t.behind])
        sheet[f"E{sheet.max_row}"].number_format = "0.0%"
        sheet[f"F{sheet.max_row}"].number_format = "0.0%"
    previous = f"So sánh với kỳ trước ({period_vi(report.previous)})" if report.previous else "So sánh với kỳ trước"
    section(previous, COMPARISON_HEADER)
    for comparison in comparison_rows(report):
        sheet.append(list(comparison))
    section("Thủ tục có nhiều hồ sơ nhất", PROCEDURE_HEADER)
    for proc in report.procedures:
        sheet.append([proc.code or "–", proc.received, proc.digitized,
                      min(proc.digitized, proc.received) / proc.received])
        sheet[f"D{sheet.max_row}"].number_format = "0.0%"
    section("Người thực hiện số hóa", OPERATOR_HEADER)
    for who, n, share in operator_rows(report):
        sheet.append([who, n, share])
        sheet[f"C{sheet.max_row}"].number_format = "0.0%"
    section("Hồ sơ đã số hóa theo mã cán bộ", OPERATOR_ID_HEADER)
    for operator_id, kind, n in report.operator_ids:
        sheet.append([operator_id, OPERATOR_VI.get(kind, kind), n])
    sheet.append([])
    sheet.append(["Nơi nhận:", None, None, None, None, None, None, header.signer_title.upper()])
    sheet.cell(sheet.max_row, 1).font = Font(bold=True, italic=True)
    sheet.cell(sheet.max_row, 8).font = bold
    signature = ["(Ký, ghi rõ họ tên, đóng dấu)", None, None, header.signer or None]
    for i in range(max(len(header.recipients), len(signature))):
        sheet.append(["- " + header.recipients[i] if i < len(header.recipients) else None, None, None, None, None,
                      None, None, signature[i] if i < len(signature) else None])
        sheet.cell(sheet.max_row, 8).font = Font(italic=i == 0, bold=i == 3)
    sheet.column_dimensions["A"].width = 30
    sheet.column_dimensions["B"].width = 48
    for col in "CDEFGHIJKLMNO":
        sheet.column_dimensions[col].width = 14

    devices = book.create_sheet("Thiết bị")
    devices.append(list(DEVICE_HEADER))
    for cell in devices[1]:
        cell.font = bold
    for d in report.devices:
        devices.append([d.device_id, d.unit_code, "Trực tuyến" if d.online else "Mất kết nối",
                        local_time(d.last_seen, report.time_zone), d.agent_version, d.hours_up, d.hours,
                        d.availability])
        devices[f"H{devices.max_row}"].number_format = "0.0%"
    devices.column_dimensions["A"].width = 24
    devices.column_dimensions["D"].width = 22
    # No formulas: text that looks like one (a unit named "=HYPERLINK(...)" in an imported CSV, a
    # header given by a user) stays text, so opening the report never runs it.
    return values_only_bytes(book)


@cache
def _font_files() -> tuple[Path, Path]:
    for regular, bold in FONT_NAMES:
        for folder in FONT_DIRS:
            if (folder / regular).is_file():
                bold_path = folder / bold
                return folder / regular, bold_path if bold_path.is_file() else folder / regular
    raise FontMissing("no DejaVuSans.ttf or NotoSans-Regular.ttf under /usr/share/fonts "
                      "(install fonts-dejavu-core or fonts-noto-core)")


def to_pdf(report: PeriodicReport) -> bytes:
    """The report as an A4 landscape PDF with embedded TrueType fonts (Vietnamese text)."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    regular, bold = _font_files()
    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_title("Báo cáo định kỳ tiến độ số hóa")
    pdf.set_creator("Sohoa fleet manager")
    pdf.add_font("Body", "", str(regular))
    pdf.add_font("Body", "B", str(bold))
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    _pdf_header(pdf, report)
    pdf.set_font("Body", "B", 13)
    pdf.multi_cell(0, 7, TITLE, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "", 9)
    pdf.cell(0, 6, f"Lập lúc {local_time(report.generated_at, report.time_zone)}",
             align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Body", "B", 11)
    pdf.cell(0, 7, "I. Tóm tắt", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "", 10)
    for line in summary_lines(report):
        pdf.multi_cell(0, 5.5, "– " + line, new_x="LMARGIN", new_y="NEXT")
    head = FontFace(emphasis="BOLD", fill_color=(230, 230, 230))
    behind = FontFace(fill_color=(248, 215, 218))

    pdf.ln(2)
    pdf.set_font("Body", "B", 11)
    pdf.cell(0, 7, "II. Kết quả theo đơn vị", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "", 8)
    widths = (14, 56, 14, 20, 20, 16, 16, 26, 25, 25, 25, 20)
    with pdf.table(col_widths=widths, headings_style=head, text_align="LEFT", line_height=4.5) as table:
        table.row([*UNIT_HEADER, "Tỷ lệ kỳ trước"])
        for u in report.progress.units.values():
            style = behind if u.status == "behind" else None
            table.row([u.code, "  " * u.depth + u.name, TIER_VI[u.tier], vi_number(u.own.received),
                       vi_number(u.own.digitized), vi_percent(u.own.rate), vi_percent(u.target), STATUS_VI[u.status],
                       vi_number(u.total.received), vi_number(u.total.digitized), vi_percent(u.total.rate),
                       vi_percent(report.previous_rate(u.code))], style=style)

    pdf.ln(3)
    pdf.set_font("Body", "B", 11)
    pdf.cell(0, 7, "III. Tổng hợp theo cấp", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "", 9)
    with pdf.table(col_widths=(30, 25, 30, 30, 25, 25, 20, 20), headings_style=head, width=205, align="LEFT",
                   line_height=5) as table:
        table.row(TIER_HEADER)
        for t in report.progress.tiers:
            table.row([TIER_VI[t.tier], str(t.units), vi_number(t.figures.received), vi_number(t.figures.digitized),
                       vi_percent(t.figures.rate), vi_percent(t.target), str(t.met), str(t.behind)])

    pdf.ln(3)
    pdf.set_font("Body", "B", 11)
    previous = f" ({period_vi(report.previous)})" if report.previous else ""
    pdf.cell(0, 7, f"IV. So sánh với kỳ trước{previous}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "", 9)
    with pdf.table(col_widths=(60, 35, 35, 35), headings_style=head, width=165, align="LEFT",
                   line_height=5) as table:
        table.row(COMPARISON_HEADER)
        for comparison in comparison_rows(report):
            table.row(comparison)

    pdf.ln(3)
    pdf.set_font("Body", "B", 11)
    pdf.cell(0, 7, "V. Thủ tục có nhiều hồ sơ nhất và người thực hiện số hóa", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "", 9)
    if report.procedures:
        with pdf.table(col_widths=(40, 25, 25, 25), headings_style=head, width=115, align="LEFT",
                       line_height=5) as table:
            table.row(PROCEDURE_HEADER)
            for proc in report.procedures:
                table.row([proc.code or "–", vi_number(proc.received), vi_number(proc.digitized),
                           vi_percent(min(proc.digitized, proc.received) / proc.received)])
        pdf.ln(2)
    if report.operators:
        with pdf.table(col_widths=(60, 25, 25), headings_style=head, width=110, align="LEFT",
                       line_height=5) as table:
            table.row(OPERATOR_HEADER)
            for who, n, share in operator_rows(report):
                table.row([who, vi_number(n), vi_percent(share)])
    if not report.procedures and not report.operators:
        pdf.cell(0, 6, "Chưa có hồ sơ nào được nhập từng hồ sơ trong phạm vi báo cáo.", new_x="LMARGIN",
                 new_y="NEXT")

    pdf.ln(3)
    pdf.set_font("Body", "B", 11)
    pdf.cell(0, 7, "VI. Thiết bị và mức sẵn sàng", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "", 9)
    if not report.devices:
        pdf.cell(0, 6, "Chưa có thiết bị nào thuộc phạm vi báo cáo.", new_x="LMARGIN", new_y="NEXT")
    else:
        with pdf.table(col_widths=(40, 20, 28, 40, 25, 28, 28, 25), headings_style=head, line_height=5) as table:
            table.row(DEVICE_HEADER)
            for d in report.devices:
                table.row([d.device_id, d.unit_code or "–", "Trực tuyến" if d.online else "Mất kết nối",
                           local_time(d.last_seen, report.time_zone), d.agent_version or "–", str(d.hours_up),
                           str(d.hours), vi_percent(d.availability)])
    _pdf_footer(pdf, report)
    return bytes(pdf.output())


def _pdf_header(pdf: Any, report: PeriodicReport) -> None:
    """The agency and number on the left, the national name, motto, place and date on the right."""
    header, top = report.header, pdf.get_y()
    pdf.set_font("Body", "", 10)
    if header.parent_agency:
        pdf.multi_cell(110, 5, header.parent_agency.upper(), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "B", 10)
    pdf.multi_cell(110, 5, report.agency, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "", 10)
    pdf.multi_cell(110, 6, header.number_line, align="C", new_x="LMARGIN", new_y="NEXT")
    bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + 115, top)
    pdf.set_font("Body", "B", 11)
    pdf.cell(160, 5, NATIONAL_NAME, align="C", new_x="LEFT", new_y="NEXT")
    pdf.set_font("Body", "BU", 11)
    pdf.cell(160, 6, MOTTO, align="C", new_x="LEFT", new_y="NEXT")
    pdf.set_font("Body", "", 10)
    pdf.cell(160, 6, report.dated, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(bottom, pdf.get_y()) + 3)


def _pdf_footer(pdf: Any, report: PeriodicReport) -> None:
    """The recipients on the left, the signature block on the right."""
    header = report.header
    pdf.ln(6)
    if pdf.get_y() > pdf.h - 60:
        pdf.add_page()
    top = pdf.get_y()
    pdf.set_font("Body", "B", 10)
    pdf.cell(110, 5, "Nơi nhận:", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Body", "", 9)
    for recipient in header.recipients:
        pdf.cell(110, 5, "- " + recipient, new_x="LMARGIN", new_y="NEXT")
    pdf.set_xy(pdf.l_margin + 150, top)
    pdf.set_font("Body", "B", 10)
    pdf.cell(120, 5, header.signer_title.upper(), align="C", new_x="LEFT", new_y="NEXT")
    pdf.set_font("Body", "", 9)
    pdf.cell(120, 5, "(Ký, ghi rõ họ tên, đóng dấu)", align="C", new_x="LEFT", new_y="NEXT")
    pdf.ln(18)
    pdf.set_x(pdf.l_margin + 150)
    pdf.set_font("Body", "B", 10)
    pdf.cell(120, 5, header.signer, align="C", new_x="LMARGIN", new_y="NEXT")
