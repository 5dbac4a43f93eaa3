"""The generated identity cards look like the real ones: blue-green, red title, emblem, QR on the
2021 front, chip and machine-readable lines on the back."""

from __future__ import annotations

import random

import numpy as np
import pytest

from device.inference.codes import read_codes
from training import cards
from training.drawing import TRAIN_FONTS

CITIZEN_CARDS = [k for k, _ in cards.CARD_KINDS if k.startswith(("cccd", "cancuoc"))]


def _draw(kind: str, dpi: int = 100, variant: int = 0) -> np.ndarray:
    return np.asarray(cards.card(kind, random.Random(kind), variant, dpi, TRAIN_FONTS[0]).img)


@pytest.mark.parametrize("kind", CITIZEN_CARDS)
def test_citizen_cards_are_blue_green_id1_cards(kind: str) -> None:
    """Every citizen card, front and back, is ID-1 sized and its ground is blue-green (red well
    below green and blue), not the pink of a driving licence."""
    rgb = _draw(kind)
    h, w = rgb.shape[:2]
    assert (w, h) == (round(85.6 / 25.4 * 100), round(54 / 25.4 * 100))
    r, g, b = (float(np.median(rgb[..., c])) for c in range(3))
    assert g > r + 10 and b > r + 10, (r, g, b)
    licence = np.asarray(cards.card("licence", random.Random(1), 0, 100, TRAIN_FONTS[0]).img)
    assert float(np.median(licence[..., 0])) > float(np.median(licence[..., 2]))


@pytest.mark.parametrize("kind", ["cccd2016_front", "cccd2021_front", "cancuoc2024_front"])
def test_fronts_carry_the_red_title_and_the_emblem(kind: str) -> None:
    """The title band holds red letters; the emblem's yellow star sits in the top-left corner
    (top right in the held-out layout)."""
    for variant, corner in ((0, slice(0, 60)), (2, slice(-60, None))):
        rgb = _draw(kind, variant=variant).astype(int)
        red = (rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
        assert red[30:60, 60:280].sum() > 150
        yellow = (rgb[..., 0] > 220) & (rgb[..., 1] > 180) & (rgb[..., 2] < 100)
        assert yellow[:60, corner].sum() > 20
        assert yellow[:, 80:-80].sum() == 0


def test_2021_front_has_a_readable_citizen_qr_top_right() -> None:
    """The 2021 card's QR code reads as a citizen card's (the kiosk parses its seven fields) and
    sits in the top-right corner."""
    rgb = _draw("cccd2021_front", dpi=300)
    found = read_codes(np.ascontiguousarray(rgb[..., ::-1]))
    assert [c.kind for c in found] == ["cccd"]
    assert found[0].position is not None
    assert min(x for x, _ in found[0].position) > rgb.shape[1] * 0.75


@pytest.mark.parametrize("kind", ["cccd2021_back", "cancuoc2024_back"])
def test_backs_carry_three_machine_readable_lines(kind: str) -> None:
    """A pale band at the foot with three dark lines of type, as the MRZ of a TD1 card."""
    rgb = _draw(kind, dpi=200)
    gray = rgb.mean(axis=2)
    band = gray[int(gray.shape[0] * 0.72):]
    dark_rows = (band < 90).sum(axis=1) > 5
    runs = np.flatnonzero(np.diff(dark_rows.astype(int)) == 1)
    assert len(runs) == 3


def test_machine_readable_lines_follow_td1() -> None:
    """30 characters a line, capitals, digits and fillers only, the name without diacritics."""
    for seed in range(20):
        lines = cards._mrz(random.Random(seed))
        assert [len(line) for line in lines] == [30, 30, 30]
        assert all(set(line) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<") for line in lines)
        assert lines[0].startswith("IDVNM") and "VNM" in lines[1]


def test_the_2021_back_has_a_chip() -> None:
    """A gold chip on the 2021 card's back; none on the 2016 card's."""
    def gold(kind: str) -> int:
        rgb = _draw(kind).astype(int)
        return int(((rgb[..., 0] > 180) & (rgb[..., 1] > 140) & (rgb[..., 2] < 120)
                    & (rgb[..., 0] - rgb[..., 2] > 80)).sum())

    assert gold("cccd2021_back") > 300
    assert gold("cccd2016_back") < 50


def test_unknown_card_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown card 'visa'"):
        cards.card("visa", random.Random(1), 0, 100, TRAIN_FONTS[0])
