"""A printable pole label: QR code with pole id and key fingerprint, plus the same in text.

Stuck inside the pole's door, it lets the next technician (or an inspector) check with
any phone that the controller in the pole is the one the city's trust list expects.
QR content (byte mode, ECC level M)::

    lightpole:1;pole=<pole id>;fp=<fingerprint>

The SVG is vector (for label printers), the PNG 300 dpi at 62 x 29 mm (a common
label-roll size); both are written mode 0644 whatever the umask. Needs the ``field``
extra: segno (QR) and Pillow (PNG).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from edge.names import check_pole_id
from edge.state import atomic_write

WIDTH_MM, HEIGHT_MM = 62.0, 29.0
DPI = 300


def qr_text(pole_id: str, fp: str) -> str:
    return f"lightpole:1;pole={pole_id};fp={fp}"


def parse_qr_text(text: str) -> tuple[str, str]:
    """(pole id, fingerprint) from a label's QR code; ValueError if it is not one of ours."""
    head, _, rest = text.partition(";")
    if head != "lightpole:1":
        raise ValueError("not a lightpole label")
    fields = dict(part.split("=", 1) for part in rest.split(";") if "=" in part)
    if "pole" not in fields or "fp" not in fields:
        raise ValueError("a lightpole label names a pole and a fingerprint")
    return check_pole_id(fields["pole"]), fields["fp"]


def _matrix(text: str) -> list[list[bool]]:
    try:
        import segno
    except ImportError:
        raise ImportError(
            "labels need the 'field' extra: pip install 'lightpole[field]' (segno, Pillow)"
        ) from None
    qr = segno.make(text, error="m", micro=False)
    return [[bool(v) for v in row] for row in qr.matrix]


def _lines(pole_id: str, fp: str, lat: float, lon: float) -> list[str]:
    return [pole_id, f"key {fp}", f"{lat:.5f}, {lon:.5f}"]


def render_svg(pole_id: str, fp: str, lat: float, lon: float) -> str:
    m = _matrix(qr_text(pole_id, fp))
    quiet = 4
    n = len(m) + 2 * quiet
    size = HEIGHT_MM - 2  # the QR code fills the label's height
    mod = size / n
    rects = "".join(
        f'<rect x="{1 + (x + quiet) * mod:.3f}" y="{1 + (y + quiet) * mod:.3f}" '
        f'width="{mod:.3f}" height="{mod:.3f}"/>'
        for y, row in enumerate(m)
        for x, dark in enumerate(row)
        if dark
    )
    texts = []
    for i, line in enumerate(_lines(pole_id, fp, lat, lon)):
        weight = ' font-weight="bold"' if i == 0 else ""
        fs = 4.2 if i == 0 else 2.6
        texts.append(
            f'<text x="{size + 2:.1f}" y="{6 + i * 6:.1f}" font-family="monospace" '
            f'font-size="{fs}"{weight}>{escape(line)}</text>'
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_MM}mm" height="{HEIGHT_MM}mm" '
        f'viewBox="0 0 {WIDTH_MM} {HEIGHT_MM}">\n'
        f"<title>{escape(qr_text(pole_id, fp))}</title>\n"
        f'<rect width="{WIDTH_MM}" height="{HEIGHT_MM}" fill="white"/>\n'
        f'<g fill="black">{rects}</g>\n' + "\n".join(texts) + "\n</svg>\n"
    )


def render_png(pole_id: str, fp: str, lat: float, lon: float) -> bytes:
    import io

    from PIL import Image, ImageDraw, ImageFont

    m = _matrix(qr_text(pole_id, fp))
    w, h = round(WIDTH_MM / 25.4 * DPI), round(HEIGHT_MM / 25.4 * DPI)
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    quiet = 4
    n = len(m) + 2 * quiet
    mod = (h - 20) // n  # whole pixels per module: crisp for scanners
    x0 = y0 = 10
    for y, row in enumerate(m):
        for x, dark in enumerate(row):
            if dark:
                px, py = x0 + (x + quiet) * mod, y0 + (y + quiet) * mod
                draw.rectangle([px, py, px + mod - 1, py + mod - 1], fill=0)
    tx = x0 + n * mod + 10
    for i, line in enumerate(_lines(pole_id, fp, lat, lon)):
        font = ImageFont.load_default(size=44 if i == 0 else 28)
        draw.text((tx, 30 + i * 70), line, fill=0, font=font)
    out = io.BytesIO()
    img.save(out, format="PNG", dpi=(DPI, DPI))
    return out.getvalue()


def write_label(
    directory: Path, pole_id: str, fp: str, lat: float, lon: float
) -> tuple[Path, Path]:
    """``<pole id>.png`` and ``.svg`` in ``directory``, mode 0644 whatever the umask,
    never written through a symbolic link. The pole id names the files: it follows the
    one name rule (InvalidName otherwise), so it cannot point elsewhere."""
    check_pole_id(pole_id)
    directory.mkdir(parents=True, exist_ok=True)
    png, svg = directory / f"{pole_id}.png", directory / f"{pole_id}.svg"
    atomic_write(png, render_png(pole_id, fp, lat, lon), mode=0o644)
    atomic_write(svg, render_svg(pole_id, fp, lat, lon).encode(), mode=0o644)
    return png, svg
