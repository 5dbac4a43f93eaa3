"""What the dossiers API takes and returns."""

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fleet.dossiers.models import Dossier
from fleet.dossiers.reconcile import Pending

State = Literal["walk_in", "named", "unmatched", "received", "digitized"]
STATE_HELP = ("walk_in: closed before anyone named it; named: a walk-in since given its code (see named_code); "
              "unmatched: digitized, in no received list; received: received, nothing digitized yet; "
              "digitized: received and at least one component digitized")


def state_of(row: Dossier) -> State:
    if row.walk_in:
        return "named" if row.named_code is not None else "walk_in"
    if row.received_on is None:
        return "unmatched"
    return "received" if row.component_at is None else "digitized"


class DossierOut(BaseModel):
    code: str
    state: State = Field(description=STATE_HELP)
    named_code: str | None = Field(description="For a named walk-in: the code it was given")
    procedure_code: str | None
    received_unit: str | None = Field(description="The unit that received it (from the received list)")
    received_on: date | None
    due_on: date | None
    result_on: date | None = Field(description="When the result was issued, per the received list")
    digitized_unit: str | None = Field(description="The unit whose device digitized its first component")
    device_id: str | None
    component_at: datetime | None = Field(description="When its first component was digitized")
    result_at: datetime | None = Field(description="When its first result (<code>-KQ<n>) was digitized")
    operator_kind: str | None = Field(description="unit_staff, postal_staff or citizen, when the device said")
    operator_id: str | None

    @classmethod
    def of(cls, row: Dossier) -> "DossierOut":
        return cls(code=row.code, state=state_of(row), named_code=row.named_code, procedure_code=row.procedure_code,
                   received_unit=row.received_unit, received_on=row.received_on, due_on=row.due_on,
                   result_on=row.result_on, digitized_unit=row.digitized_unit, device_id=row.device_id,
                   component_at=row.component_at, result_at=row.result_at, operator_kind=row.operator_kind,
                   operator_id=row.operator_id)


class DocumentOut(BaseModel):
    name: str = Field(description="<code>.<n>.pdf (component) or <code>-KQ<n>.pdf (result)")
    device_name: str | None = Field(
        default=None, description="The name its device gave, when the fleet renumbered it (the number was taken)")
    kind: Literal["component", "result"]
    sequence: int | None
    doctype: str | None
    pages: int
    dpi: int | None = Field(description="The lowest resolution among the pages it was built from, when known")
    text_layer: bool | None = Field(description="Has a text layer; null while the file is not held")
    sha256: str
    size: int
    device_id: str
    closed_at: datetime
    operator_kind: str | None
    operator_id: str | None
    file_held: bool
    download_url: str
    signed_sha256: str | None = Field(
        default=None, description="The signed copy's sha256, once the fleet signed it (ready for delivery); else null")
    signed_at: datetime | None = Field(default=None, description="When the fleet signed it")
    signing_level: Literal["B-B", "B-T"] | None = Field(default=None, description="PAdES baseline level")
    signing_error: str | None = Field(
        default=None, description="Why it could not be signed yet (last attempt), for the admin; null once signed")


class DossierPageOut(BaseModel):
    page_id: str
    device_id: str
    batch_id: str
    sequence: int
    side: str
    dossier_code: str | None
    doctype: str | None
    dpi: int | None
    dropped: bool
    quality_ok: bool | None = Field(description="The quality check's verdict; null when not checked")
    quality_issues: list[str]
    captured_at: datetime
    operator_kind: str | None = Field(default=None, description="Who captured it, when the device said")
    operator_id: str | None = Field(default=None, description="The operator's opaque id (staff only)")
    file_url: str


class DossierDetailOut(DossierOut):
    documents: list[DocumentOut]
    pages: list[DossierPageOut]


class NameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=64, description="The dossier's code, from its receipt slip")


class ReceivedDossierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(max_length=64)
    procedure_code: str = Field(default="", max_length=64)
    unit_code: str = Field(max_length=64, description="The receiving unit, valid on the received date")
    received_date: str = Field(description="YYYY-MM-DD or DD/MM/YYYY")
    due_date: str = Field(default="", description="YYYY-MM-DD or DD/MM/YYYY")
    result_date: str = Field(default="", description="When the result was issued, if it was")


class ReceivedImportOut(BaseModel):
    inserted: int
    updated: int
    unchanged: int
    repeated: int = Field(description="Rows given twice identically, taken once")


class PendingOut(BaseModel):
    code: str
    unit_code: str
    procedure_code: str | None
    received_on: date
    due_on: date | None

    @classmethod
    def of(cls, row: Pending) -> "PendingOut":
        return cls(code=row.code, unit_code=row.unit_code, procedure_code=row.procedure_code,
                   received_on=row.received_on, due_on=row.due_on)


class ChaseOut(BaseModel):
    start: str
    end: str
    root: str | None
    dossiers: list[PendingOut] = Field(description="Received, nothing digitized, oldest first")


class UnitSummaryOut(BaseModel):
    code: str = Field(description="The unit (receiving, or digitizing for unmatched dossiers)")
    name: str | None = Field(description="Its name in the range, when the unit tree has it")
    received: int = Field(description="Dossiers it received in the months")
    digitized: int = Field(description="Of those, with at least one component digitized (at any time)")
    results: int = Field(description="Of those, with their result digitized")
    rate: float | None = Field(description="digitized / received (null when nothing was received)")
    unmatched: int = Field(description="Dossiers its devices digitized in the months matching nothing received")


class SummaryOut(BaseModel):
    start: str
    end: str
    root: str | None
    units: list[UnitSummaryOut] = Field(description="By code")
    total: UnitSummaryOut = Field(description="Every unit listed (code and name: the root's, or empty)")
