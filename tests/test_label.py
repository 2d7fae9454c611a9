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


# -- the QR code: the pole's public page, or the plain form ----------------------------------
def test_the_qr_code_opens_the_public_page_and_parses_back_in_both_forms():
    import io

    import zxingcpp

    from provisioning.label import parse_qr_text, qr_text

    base = "https://data.city.example/poles/"
    url = qr_text("nl-ehv-00042", FP, base)
    assert url == f"https://data.city.example/poles/nl-ehv-00042?fp={FP}"
    png = Image.open(io.BytesIO(render_png("nl-ehv-00042", FP, 51.4, 5.4, base)))
    assert [b.text for b in zxingcpp.read_barcodes(png)] == [url]  # an independent reader
    assert parse_qr_text(url) == ("nl-ehv-00042", FP)
    plain = qr_text("nl-ehv-00042", FP)
    assert plain == f"lightpole:1;pole=nl-ehv-00042;fp={FP}"
    assert parse_qr_text(plain) == ("nl-ehv-00042", FP)


@pytest.mark.parametrize(
    "text",
    [
        "https://data.city.example/poles/nl-ehv-00042",  # no fingerprint
        "https://data.city.example/poles/nl-ehv-00042?fp=not-hex",
        "https://data.city.example/poles/..?fp=5647:5aa7:5463:474c",  # not a pole id
        "https://data.city.example/poles/nl%0a1?fp=5647:5aa7:5463:474c",
        "lightpole:1;pole=nl-ehv-00042;fp=5647:5aa7:5463:474c\n",
        "lightpole:1;pole=nl-ehv-00042",
        "lightpole:2;pole=nl-ehv-00042;fp=5647:5aa7:5463:474c",
        "https://x.example/" + "a" * 600 + "?fp=5647:5aa7:5463:474c",
    ],
)
def test_a_code_that_is_not_one_of_ours_is_refused(text):
    from provisioning.label import parse_qr_text

    with pytest.raises(ValueError):
        parse_qr_text(text)


@pytest.mark.parametrize(
    "url",
    ["ftp://data.city.example/poles", "data.city.example/poles", "https://x.example/p?a=1",
     "https://x.example/p q", "https://x.example/" + "p" * 200],
)  # fmt: skip
def test_a_public_url_that_cannot_be_a_base_is_one_sentence(url):
    from provisioning.label import check_public_url

    with pytest.raises(ValueError, match="public-url"):
        check_public_url(url)
