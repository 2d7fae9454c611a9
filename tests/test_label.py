"""The label renders completely: every line of text of the SVG, rasterised with a real
monospace font at the SVG's own positions and sizes, lies inside the 62 x 29 mm label
and clear of the QR code, for short and the longest pole ids; the PNG shows the same."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from PIL import Image, ImageDraw

from provisioning.label import (
    HEIGHT_MM,
    QR_MM,
    WIDTH_MM,
    _mono_font,
    render_png,
    render_svg,
)

FP = "5647:5aa7:5463:474c"
SCALE = 20  # pixels per millimetre for the rasterisation


def _text_boxes(svg: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """(text, bounding box in mm) of every <text> of ``svg``, rasterised with a real font."""
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svg)
    img = Image.new("L", (int(WIDTH_MM * SCALE), int(HEIGHT_MM * SCALE)), 255)
    draw = ImageDraw.Draw(img)
    out = []
    for t in root.iter(ns + "text"):
        size = float(t.get("font-size"))
        font = _mono_font(round(size * SCALE))
        x, y = float(t.get("x")) * SCALE, float(t.get("y")) * SCALE
        box = draw.textbbox((x, y), t.text, font=font, anchor="ls")
        out.append((t.text, tuple(v / SCALE for v in box)))
    return out


@pytest.mark.parametrize("pole_id", ["nl-ehv-00042", "nl-amsterdam-centrum-000123", "n" * 63])
def test_every_line_of_the_svg_fits_the_label(pole_id):
    boxes = _text_boxes(render_svg(pole_id, FP, 51.4416, 5.4697))
    texts = "".join(t for t, _ in boxes)
    assert pole_id in texts.replace("key", "") and FP in texts  # nothing cut, nothing lost
    for text, (x0, y0, x1, y1) in boxes:
        assert x0 >= QR_MM + 1 and x1 <= WIDTH_MM, (text, x0, x1)  # right of the QR code
        assert y0 >= 0 and y1 <= HEIGHT_MM, (text, y0, y1)


def test_the_fingerprint_has_a_line_of_its_own_in_both_renderings():
    boxes = _text_boxes(render_svg("nl-ehv-00042", FP, 51.4416, 5.4697))
    assert FP in [t for t, _ in boxes]
    png = Image.open(__import__("io").BytesIO(render_png("nl-ehv-00042", FP, 51.4, 5.4)))
    w, h = png.size
    assert (w, h) == (round(WIDTH_MM / 25.4 * 300), round(HEIGHT_MM / 25.4 * 300))
    # Ink reaches the text column and stops short of the right edge: nothing runs off.
    px = png.load()
    right = [x for x in range(w) for y in range(0, h, 3) if px[x, y] < 128]
    assert max(right) < w - 5
