"""The hand-off contract between the fleet and a receiver (the province's one-stop system, or the
reference receiver :mod:`fleet.handoff_receiver`): paths, headers, the manifest, the idempotency
key. ``docs/handoff.md`` explains it; ``fleet/handoff_receiver/openapi.yaml`` is its OpenAPI
document, and a test checks the reference receiver against it.

Per dossier, the fleet sends each signed PDF (``PUT .../documents/{name}``), then the manifest
(``PUT .../manifest``) naming every document it has delivered for that dossier. The receiver
answers the manifest with one acknowledgement per document it has filed. Every request carries an
``Idempotency-Key``: for a document it is :func:`document_key` (the same on every retry, from any
fleet process), so a document is filed at most once however often it is sent.

>>> document_key("H10.01-261207-0001", "H10.01-261207-0001.1", "ab" * 32)[:16]
'277c90a100176adc'
"""

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CONTRACT_VERSION = 1
BASE_PATH = "/handoff/v1"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SHA256_HEADER = "Content-SHA256"
DOCUMENT_PATH = BASE_PATH + "/dossiers/{dossier_code}/documents/{name}"
MANIFEST_PATH = BASE_PATH + "/dossiers/{dossier_code}/manifest"
MANIFEST_FILE = "manifest.json"


def document_key(dossier_code: str, name: str, signed_sha256: str) -> str:
    """The idempotency key of one signed document: the same inputs give the same key, whoever
    sends it and however often; a re-signed document (another sha256) is another document."""
    return hashlib.sha256(f"sohoa-handoff-v1\n{dossier_code}\n{name}\n{signed_sha256}".encode()).hexdigest()


def file_name(name: str) -> str:
    """The file a document is filed under: its name (``<code>.<n>``, ``<code>-KQ<n>``) plus ``.pdf``."""
    return name if name.lower().endswith(".pdf") else f"{name}.pdf"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManifestDocument(_Model):
    name: str = Field(description="The document's name: <dossier code>.<n> (component) or <dossier code>-KQ<n>")
    file: str = Field(description="The file it was sent as (the name plus .pdf)")
    kind: Literal["component", "result"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the signed PDF sent")
    size: int = Field(ge=0, description="Bytes of the signed PDF")
    pages: int = Field(ge=0)
    idempotency_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    operator_kind: str | None = Field(description="unit_staff, postal_staff or citizen (who digitized it)")
    signing_level: str | None = Field(description="PAdES level of the signature (B-B, B-T)")
    signing_certificate: str | None = Field(description="The signer's certificate (PEM)")


class Manifest(_Model):
    contract_version: int = CONTRACT_VERSION
    dossier_code: str
    procedure_code: str | None
    unit_code: str | None = Field(description="The unit that received the dossier, else the one that digitized it")
    documents: list[ManifestDocument]

    def key(self) -> str:
        """The manifest's idempotency key: its content's hash (a later manifest with one more
        document is another request)."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def canonical(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")).encode()


class DocumentReceipt(_Model):
    idempotency_key: str
    receipt: str = Field(description="The receiver's own reference for the filed document")
    duplicate: bool = Field(description="True when this key had been received before (nothing filed again)")


class Acknowledgement(_Model):
    name: str
    sha256: str
    idempotency_key: str
    receipt: str


class ManifestReceipt(_Model):
    dossier_code: str
    acknowledged: list[Acknowledgement]
    missing: list[str] = Field(default=[], description="Documents the manifest names whose file never arrived")
