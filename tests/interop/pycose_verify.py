"""Independent verification with pycose, run in its own virtual environment.

Reads a trust list (our exported JSON) and JSON lines {"topic": ..., "payload": hex}
on stdin; verifies each message with pycose only, resolves the SenML with the few
lines below (RFC 8428 §4.6, written from the RFC, not from our code), and prints
one JSON line per message. Imports nothing from this repository.
"""

import json
import sys

import cbor2
from pycose.headers import KID
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message


def resolve(pack):
    bn, bt, out = "", 0, []
    for rec in pack:
        bn = rec.get(-2, bn)
        bt = rec.get(-3, bt)
        value = rec.get(2, rec.get(3, rec.get(4)))
        out.append({"n": bn + rec.get(0, ""), "u": rec.get(1), "v": value, "t": bt + rec.get(6, 0)})
    return out


def main():
    with open(sys.argv[1]) as f:
        trust = json.load(f)
    keys = {
        bytes.fromhex(k["kid"]): (k["pole_id"], bytes.fromhex(k["public_key"]))
        for k in trust["keys"]
        if k["status"] == "active"
    }
    for line in sys.stdin:
        item = json.loads(line)
        raw = bytes.fromhex(item["payload"])
        result = {"topic": item["topic"], "ok": False}
        try:
            msg = Sign1Message.decode(raw)
            kid = msg.phdr.get(KID)
            pole_id, pub = keys[kid]
            msg.key = OKPKey(crv=Ed25519, x=pub)
            result["ok"] = bool(msg.verify_signature())
            result["pole_id"] = pole_id
            result["typ"] = msg.phdr.get(16)  # the message kind (RFC 9596 typ), signed
            claims = cbor2.loads(raw).value[0]
            result["iss"] = cbor2.loads(claims)[15][1]
            result["records"] = resolve(cbor2.loads(msg.payload))
        except Exception as exc:  # report, do not crash: the test decides
            result["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
