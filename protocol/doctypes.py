"""Document types: the class ids a device sends in ``doctype`` and the names people read.

The device classifies pages into these ids and the fleet shows them; both sides import this
module, so a page is never labelled ``receipt`` on a Vietnamese screen and the two sides cannot
disagree on a name. Pages show :func:`name` in their language; an id this version does not know
(a newer model's class) is shown as the id itself rather than hidden.

>>> name("birth_certificate", "vi"), name("birth_certificate", "en")
('Giấy khai sinh', 'Birth certificate')
>>> name(UNSURE, "vi")
'Chưa rõ loại giấy tờ: xin chọn loại'
>>> name("future_class", "vi")
'future_class'
"""

from __future__ import annotations

from typing import Literal

Language = Literal["vi", "en"]

#: Class ids, in the shipped model's output order.
DOCTYPES: tuple[str, ...] = (
    "id_card",
    "birth_certificate",
    "marriage_certificate",
    "land_certificate",
    "household_book",
    "application_form",
    "official_document",
    "receipt",
    "dossier_receipt",
    "other",
)

OTHER = "other"
#: The answer when neither the image nor the title is sure enough: a question for the clerk, not a
#: class of the model (never a correction target, never a training label).
UNSURE = "unsure"

#: Vietnamese name of each class, as a clerk reads it.
LABELS_VI: dict[str, str] = {
    "id_card": "Giấy tờ tùy thân (CCCD/CMND, hộ chiếu, giấy phép lái xe)",
    "birth_certificate": "Giấy khai sinh",
    "marriage_certificate": "Giấy chứng nhận kết hôn",
    "land_certificate": "Giấy chứng nhận quyền sử dụng đất",
    "household_book": "Sổ hộ khẩu",
    "application_form": "Tờ khai, đơn, biểu mẫu",
    "official_document": "Văn bản hành chính (quyết định, công văn)",
    "receipt": "Biên lai, hóa đơn",
    "dossier_receipt": "Giấy tiếp nhận hồ sơ và hẹn trả kết quả",
    "other": "Loại khác",
}
UNSURE_VI = "Chưa rõ loại giấy tờ: xin chọn loại"

#: English name of each class.
LABELS_EN: dict[str, str] = {
    "id_card": "Identity document (ID card, passport, driving licence)",
    "birth_certificate": "Birth certificate",
    "marriage_certificate": "Marriage certificate",
    "land_certificate": "Land-use right certificate",
    "household_book": "Household registration book",
    "application_form": "Application or declaration form",
    "official_document": "Administrative document (decision, letter)",
    "receipt": "Receipt or invoice",
    "dossier_receipt": "Dossier receipt and appointment slip",
    "other": "Other",
}
UNSURE_EN = "Not sure what this is: please choose its type"

NAMES: dict[Language, dict[str, str]] = {
    "vi": {**LABELS_VI, UNSURE: UNSURE_VI},
    "en": {**LABELS_EN, UNSURE: UNSURE_EN},
}
"""Every id a page may carry (the classes and :data:`UNSURE`) -> its name, per language."""


def name(doctype: str, lang: Language = "vi") -> str:
    """The name of ``doctype`` in ``lang``; the id itself when this version does not know it."""
    return NAMES[lang].get(doctype, doctype)
