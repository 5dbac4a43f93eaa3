"""A page typed `unsure` reads as a question on the review screen and is never offered as a type."""

from device.inference.doctype import DOCTYPES, UNSURE, UNSURE_VI
from device.kiosk.app import DOCTYPES_EN, _doctype_choices, _doctype_labels


def test_unsure_is_shown_as_a_question_but_is_not_a_choice() -> None:
    labels = _doctype_labels()
    assert labels[UNSURE] == UNSURE_VI and "chọn" in UNSURE_VI
    assert "choose" in DOCTYPES_EN[UNSURE]
    choices = [c["id"] for c in _doctype_choices(labels)]
    assert choices == list(DOCTYPES) and UNSURE not in choices
