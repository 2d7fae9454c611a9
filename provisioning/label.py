"""A printable pole label: QR code with pole id and key fingerprint, plus the same in text.

Stuck inside the pole's door, it lets the next technician (or an inspector) check with
any phone that the controller in the pole is the one the city's trust list expects.
Where the city runs its public pages (city/web/, ``python -m city.cli serve``), the QR
code is the pole's public page, with the fingerprint in the query::

    <public url>/<pole id>?fp=<fingerprint>
    e.g. https://data.city.example/poles/nl-ehv-00042?fp=5647:5aa7:5463:474c

so any phone camera opens what the pole measures, what it never records, and whether
the label matches the key the city trusts. Without a public URL it holds
(byte mode, ECC level M)::

    lightpole:1;pole=<pole id>;fp=<fingerprint>

``parse_qr_text`` reads both forms.

The SVG is vector (for label printers), the PNG 300 dpi at 62 x 29 mm (a common
label-roll size); both are written mode 0644 whatever the umask. Needs the ``field``
extra: segno (QR) and Pillow (PNG).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from edge.names import check_pole_id
from edge.state import atomic_write

WIDTH_MM, HEIGHT_MM = 62.0, 29.0
DPI = 300
FINGERPRINT = re.compile(r"[0-9a-f]{4}(?::[0-9a-f]{4}){1,15}")  # edge.cose.fingerprint
MAX_QR_TEXT = 500  # a label holds a short URL; anything longer is not ours


def check_public_url(url: str) -> str:
    """The base URL of the city's public pages (``https://host/path``), without a
    trailing slash; ValueError with a sentence otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(
            "--public-url must be an http(s) URL such as https://data.city.example/poles"
        )
    if parts.query or parts.fragment or any(c.isspace() for c in url):
        raise ValueError("--public-url is a base URL: no query, fragment or spaces")
    if len(url) > 200:
        raise ValueError("--public-url is too long for a label's QR code (200 characters at most)")
    return url.rstrip("/")


def qr_text(pole_id: str, fp: str, public_url: str | None = None) -> str:
    """What the QR code holds: the pole's public page (``<public_url>/<pole id>?fp=<fp>``)
    or, without a public URL, ``lightpole:1;pole=<pole id>;fp=<fp>``."""
    if public_url:
        return f"{check_public_url(public_url)}/{check_pole_id(pole_id)}?fp={fp}"
    return f"lightpole:1;pole={pole_id};fp={fp}"


def parse_qr_text(text: str) -> tuple[str, str]:
    """(pole id, fingerprint) from a label's QR code, either form; ValueError if it is not
    one of ours (a pole id outside the name rule, no fingerprint, or one that is not
    grouped hex)."""
    if len(text) > MAX_QR_TEXT:
        raise ValueError("not a lightpole label (too long)")
    if text.startswith(("https://", "http://")):
        parts = urlsplit(text)
        query = parse_qs(parts.query, max_num_fields=4)
        segments = parts.path.rstrip("/").split("/")
        if not segments[-1] or "fp" not in query:
            raise ValueError("a lightpole label names a pole and a fingerprint")
        pole, fp = segments[-1], query["fp"][0]
    else:
        head, _, rest = text.partition(";")
        if head != "lightpole:1":
            raise ValueError("not a lightpole label")
        fields = dict(part.split("=", 1) for part in rest.split(";") if "=" in part)
        if "pole" not in fields or "fp" not in fields:
            raise ValueError("a lightpole label names a pole and a fingerprint")
        pole, fp = fields["pole"], fields["fp"]
    if not FINGERPRINT.fullmatch(fp):
        raise ValueError("a lightpole label's fingerprint is grouped hex, like 5647:5aa7:5463:474c")
    return check_pole_id(pole), fp


def _matrix(text: str) -> list[list[bool]]:
    try:
        import segno
    except ImportError:
        raise ImportError(
            "labels need the 'field' extra: pip install 'lightpole[field]' (segno, Pillow)"
        ) from None
    qr = segno.make(text, error="m", micro=False)
    return [[bool(v) for v in row] for row in qr.matrix]


# Text beside the QR code: one layout for SVG and PNG. A monospace glyph is 0.602 em wide
# (DejaVu Sans Mono; most monospace fonts are narrower), so a line of n characters at
# font size f (mm) needs n * 0.62 * f mm: every line is sized to fit the space left of
# the label's right edge, and a pole id too long even at the smallest readable size is
# broken over lines. The fingerprint, the one thing a technician compares, gets a line
# of its own.
ADVANCE = 0.62  # em per character, with a margin over 0.602
MIN_FONT_MM = 1.6
QR_MM = HEIGHT_MM - 2  # the QR code fills the label's height
TEXT_X_MM = QR_MM + 2
TEXT_W_MM = WIDTH_MM - TEXT_X_MM - 1


def layout(pole_id: str, fp: str, lat: float, lon: float) -> list[tuple[str, float, float, bool]]:
    """[(text, font size mm, baseline y mm, bold)] of every text line on the label."""
    wanted = [(pole_id, 4.2, True), ("key", 2.6, False), (fp, 2.6, False),
              (f"{lat:.5f}, {lon:.5f}", 2.6, False)]  # fmt: skip
    lines: list[tuple[str, float, bool]] = []
    for text, size, bold in wanted:
        per_line = int(TEXT_W_MM / (ADVANCE * MIN_FONT_MM))
        chunks = [text[i : i + per_line] for i in range(0, len(text), per_line)] or [""]
        for chunk in chunks:
            fit = TEXT_W_MM / (ADVANCE * max(len(chunk), 1))
            lines.append((chunk, min(size, fit), bold))
    out, y = [], 1.0
    for text, size, bold in lines:
        y += size * 1.25
        out.append((text, round(size, 2), round(y, 2), bold))
    return out


def render_svg(pole_id: str, fp: str, lat: float, lon: float, public_url: str | None = None) -> str:
    m = _matrix(qr_text(pole_id, fp, public_url))
    quiet = 4
    n = len(m) + 2 * quiet
    mod = QR_MM / n
    rects = "".join(
        f'<rect x="{1 + (x + quiet) * mod:.3f}" y="{1 + (y + quiet) * mod:.3f}" '
        f'width="{mod:.3f}" height="{mod:.3f}"/>'
        for y, row in enumerate(m)
        for x, dark in enumerate(row)
        if dark
    )
    texts = [
        f'<text x="{TEXT_X_MM:.1f}" y="{y:.2f}" font-family="monospace" font-size="{size}"'
        + (' font-weight="bold"' if bold else "")
        + f">{escape(text)}</text>"
        for text, size, y, bold in layout(pole_id, fp, lat, lon)
    ]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_MM}mm" height="{HEIGHT_MM}mm" '
        f'viewBox="0 0 {WIDTH_MM} {HEIGHT_MM}">\n'
        f"<title>{escape(qr_text(pole_id, fp, public_url))}</title>\n"
        f'<rect width="{WIDTH_MM}" height="{HEIGHT_MM}" fill="white"/>\n'
        f'<g fill="black">{rects}</g>\n' + "\n".join(texts) + "\n</svg>\n"
    )


def _mono_font(size_px: int):
    """A monospace TrueType font at ``size_px`` (DejaVu Sans Mono where installed), else
    Pillow's built-in font."""
    from PIL import ImageFont

    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
                 "/usr/share/fonts/TTF/DejaVuSansMono.ttf"):  # fmt: skip
        if Path(path).exists():
            return ImageFont.truetype(path, size_px)
    return ImageFont.load_default(size=size_px)


def render_png(
    pole_id: str, fp: str, lat: float, lon: float, public_url: str | None = None
) -> bytes:
    import io

    from PIL import Image, ImageDraw

    m = _matrix(qr_text(pole_id, fp, public_url))
    px_mm = DPI / 25.4
    w, h = round(WIDTH_MM * px_mm), round(HEIGHT_MM * px_mm)
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    quiet = 4
    n = len(m) + 2 * quiet
    mod = int(QR_MM * px_mm) // n  # whole pixels per module: crisp for scanners
    x0 = y0 = round(px_mm)
    for y, row in enumerate(m):
        for x, dark in enumerate(row):
            if dark:
                px, py = x0 + (x + quiet) * mod, y0 + (y + quiet) * mod
                draw.rectangle([px, py, px + mod - 1, py + mod - 1], fill=0)
    for text, size, y, _bold in layout(pole_id, fp, lat, lon):
        font = _mono_font(max(1, round(size * px_mm)))
        draw.text((TEXT_X_MM * px_mm, y * px_mm), text, fill=0, font=font, anchor="ls")
    out = io.BytesIO()
    img.save(out, format="PNG", dpi=(DPI, DPI))
    return out.getvalue()


def write_label(
    directory: Path,
    pole_id: str,
    fp: str,
    lat: float,
    lon: float,
    public_url: str | None = None,
) -> tuple[Path, Path]:
    """``<pole id>.png`` and ``.svg`` in ``directory``, mode 0644 whatever the umask,
    never written through a symbolic link. The pole id names the files: it follows the
    one name rule (InvalidName otherwise), so it cannot point elsewhere. With
    ``public_url`` the QR code opens the pole's public page (``qr_text``)."""
    check_pole_id(pole_id)
    if public_url:
        public_url = check_public_url(public_url)
    directory.mkdir(parents=True, exist_ok=True)
    png, svg = directory / f"{pole_id}.png", directory / f"{pole_id}.svg"
    atomic_write(png, render_png(pole_id, fp, lat, lon, public_url), mode=0o644)
    atomic_write(svg, render_svg(pole_id, fp, lat, lon, public_url).encode(), mode=0o644)
    return png, svg
