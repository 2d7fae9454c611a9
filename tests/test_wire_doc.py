"""docs/wire-format.md's worked example is regenerated from the code, so the doc cannot drift."""

import re
from pathlib import Path

from edge import senml
from edge.cose import Signer, cti_bytes
from edge.window import Window

DOC = Path(__file__).resolve().parent.parent / "docs" / "wire-format.md"


def test_worked_example_bytes_match_the_code():
    text = DOC.read_text()
    block = text.split("The whole message")[1].split("```")[1]
    documented = bytes.fromhex(re.sub(r"\s+", "", block))
    s = Signer(bytes(range(32)), "nl-ex-0001")
    w = Window(1_799_999_940, 60)
    for v in (21.5, 21.25, 21.75):
        w.add(("bme280", "temperature"), v)
    enc = senml.WindowPackEncoder(
        "nl-ex-0001", [senml.Series("bme280", "temperature", "temperature", "Cel", 0.01)]
    )
    produced = s.sign("data", enc.encode(w, w.end), 1_800_000_000, cti_bytes(1, 42))
    assert produced == documented
    assert s.public_key.hex() in text and s.kid.hex() in text
