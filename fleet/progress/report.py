"""The periodic report ("Báo cáo định kỳ") for the Chairman: for a range of months and a unit's
subtree, a short summary, a table per unit (received, digitized, rate, target, status), totals
per tier, and the devices with their availability. Exported as XLSX (openpyxl) and PDF (fpdf2
with a DejaVu/Noto TrueType font, so Vietnamese renders and can be searched and copied).

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
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.db import hour_bucket
from fleet.display import DEFAULT_ZONE, local_time, zone
from fleet.errors import FleetError
from fleet.models import Device, TelemetrySample, is_online
from fleet.progress import periods
from fleet.progress.rates import Progress, progress
from fleet.spreadsheet import values_only_bytes

log = logging.getLogger(__name__)

TIER_VI = {"province": "Tỉnh", "agency": "Cơ quan cấp tỉnh", "district": "Huyện", "commune": "Xã"}
STATUS_VI = {"met": "Đạt", "behind": "Chưa đạt", "no_data": "Chưa có số liệu"}
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/noto"),
             Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts"))
FONT_NAMES = (("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"), ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf"))


class FontMissing(FleetError, FileNotFoundError):
    """No TrueType font with Vietnamese letters was found for the PDF."""


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
                 heartbeat_timeout_s: float = 180.0, time_zone: str = DEFAULT_ZONE) -> PeriodicReport:
    figures = progress(session, start, end, root, time_zone)
    devices = device_availability(session, set(figures.units), start, end, now, heartbeat_timeout_s, time_zone)
    return PeriodicReport(progress=figures, devices=devices, generated_at=now, time_zone=zone(time_zone))


def vi_number(n: int) -> str:
    """1234567 -> '1.234.567' (Vietnamese thousands separator)."""
    return f"{n:,}".replace(",", ".")


def vi_percent(rate: float | None) -> str:
    """0.4567 -> '45,7%'; None -> '–'."""
    return "–" if rate is None else f"{rate * 100:.1f}%".replace(".", ",")


def _month_vi(period: str) -> str:
    return f"{period[5:]}/{period[:4]}"


def period_vi(report: PeriodicReport) -> str:
    p = report.progress
    return _month_vi(p.start) if p.start == p.end else f"{_month_vi(p.start)} – {_month_vi(p.end)}"


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
                    "Cơ sở số liệu")
BASIS_VI = {"dossiers": "Từng hồ sơ", "counts": "Số tổng hợp"}
TIER_HEADER = ("Cấp", "Số đơn vị", "Tiếp nhận", "Đã số hóa", "Tỷ lệ", "Chỉ tiêu", "Đạt", "Chưa đạt")
DEVICE_HEADER = ("Thiết bị", "Đơn vị", "Trạng thái", "Lần cuối liên lạc", "Phiên bản", "Giờ hoạt động",
                 "Số giờ trong kỳ", "Mức sẵn sàng")


def to_xlsx(report: PeriodicReport) -> bytes:
    """The report as an Excel workbook: sheet "Báo cáo" (summary, units, tiers), sheet "Thiết bị"."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill

    bold = Font(bold=True)
    behind_fill = PatternFill("solid", fgColor="F8D7DA")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Báo cáo"
    sheet.append([TITLE])
    sheet["A1"].font = Font(bold=True, size=13)
    for line in summary_lines(report):
        sheet.append([line])
    sheet.append([])
    sheet.append(list(UNIT_HEADER_XLSX))
    for cell in sheet[sheet.max_row]:
        cell.font = bold
    for u in report.progress.units.values():
        sheet.append([u.code, "    " * u.depth + u.name, TIER_VI[u.tier], u.own.received, u.own.digitized,
                      u.own.rate, u.target, STATUS_VI[u.status], u.total.received, u.total.digitized, u.total.rate,
                      u.own.results, u.own.unmatched, BASIS_VI[u.basis]])
        row = sheet.max_row
        for col in ("F", "G", "K"):
            sheet[f"{col}{row}"].number_format = "0.0%"
        if u.status == "behind":
            for cell in sheet[row]:
                cell.fill = behind_fill
    sheet.append([])
    sheet.append(["Tổng hợp theo cấp"])
    sheet.cell(sheet.max_row, 1).font = bold
    sheet.append(list(TIER_HEADER))
    for cell in sheet[sheet.max_row]:
        cell.font = bold
    for t in report.progress.tiers:
        sheet.append([TIER_VI[t.tier], t.units, t.figures.received, t.figures.digitized, t.figures.rate, t.target,
                      t.met, t.behind])
        sheet[f"E{sheet.max_row}"].number_format = "0.0%"
        sheet[f"F{sheet.max_row}"].number_format = "0.0%"
    sheet.column_dimensions["B"].width = 48
    for col in "CDEFGHIJKLMN":
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
    # No formulas: text that looks like one (a unit named "=HYPERLINK(...)" in an imported CSV)
    # stays text, so opening the report never runs it.
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
    widths = (14, 70, 14, 20, 20, 16, 16, 26, 27, 27, 27)
    with pdf.table(col_widths=widths, headings_style=head, text_align="LEFT", line_height=4.5) as table:
        table.row(UNIT_HEADER)
        for u in report.progress.units.values():
            style = behind if u.status == "behind" else None
            table.row([u.code, "  " * u.depth + u.name, TIER_VI[u.tier], vi_number(u.own.received),
                       vi_number(u.own.digitized), vi_percent(u.own.rate), vi_percent(u.target), STATUS_VI[u.status],
                       vi_number(u.total.received), vi_number(u.total.digitized), vi_percent(u.total.rate)],
                      style=style)

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
    pdf.cell(0, 7, "IV. Thiết bị và mức sẵn sàng", new_x="LMARGIN", new_y="NEXT")
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
    return bytes(pdf.output())
