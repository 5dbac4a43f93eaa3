"""The synthetic-document generator and its degradations: deterministic, every class, splits apart."""

from __future__ import annotations

import numpy as np
import pytest

from device.inference.doctype import DOCTYPES
from training import drawing
from training.generator import degrade, render, sample


@pytest.mark.parametrize("doctype", DOCTYPES)
def test_every_class_renders_deterministically(doctype: str) -> None:
    """Same seed, same pixels; another seed or the held-out split gives another page."""
    a = render(doctype, 5, dpi=50)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert min(a.shape[:2]) >= 80
    assert np.array_equal(a, render(doctype, 5, dpi=50))
    assert not np.array_equal(a, render(doctype, 6, dpi=50)) or a.shape != render(doctype, 6, dpi=50).shape
    b = render(doctype, 5, dpi=50, split="heldout")
    assert a.shape != b.shape or not np.array_equal(a, b)
    assert a.std() > 5  # not a blank sheet (an "other" page may be blank, but not for this seed)


def test_page_shapes_follow_the_documents() -> None:
    """A CCCD is a landscape card, a receipt strip is tall and narrow, a decision is A4 portrait."""
    card = render("id_card", 0, dpi=100, variant=0)
    h, w = card.shape[:2]
    assert w > h and w < 600
    decision = render("official_document", 0, dpi=100)
    assert decision.shape[0] / decision.shape[1] == pytest.approx(297 / 210, rel=0.02)


def test_unknown_doctype_is_an_error() -> None:
    """A class the model does not know."""
    with pytest.raises(ValueError, match="unknown doctype 'passport_photo'"):
        render("passport_photo", 1)


def test_degrade_is_deterministic_and_changes_the_page() -> None:
    """Both degradation families are deterministic, change pixels, and strength 0 is a copy."""
    page = render("receipt", 3, dpi=60)
    for split in ("train", "heldout"):
        d1 = degrade(page, 9, split=split)
        assert np.array_equal(d1, degrade(page, 9, split=split))
        assert d1.shape != page.shape or not np.array_equal(d1, page)
    same = degrade(page, 9, strength=0)
    assert np.array_equal(same, page) and same is not page
    assert np.array_equal(sample("receipt", 3, dpi=60), degrade(page, 3))


def test_degrade_rejects_non_bgr_input() -> None:
    """Grey and float images are refused with a ValueError."""
    with pytest.raises(ValueError, match="BGR uint8"):
        degrade(np.zeros((10, 10), np.uint8), 1)
    with pytest.raises(ValueError, match="BGR uint8"):
        degrade(np.zeros((10, 10, 3), np.float32), 1)


def test_training_and_heldout_use_different_fonts_and_layouts() -> None:
    """The held-out set must measure fonts and layout variants never trained on."""
    assert not set(drawing.TRAIN_FONTS) & set(drawing.HELDOUT_FONTS)
    assert not set(drawing.TRAIN_VARIANTS) & set(drawing.HELDOUT_VARIANTS)
