#!/usr/bin/env python3
"""Stand-alone verifier for a Countersign audit bundle (see README.md in the bundle).

Only the Python 3 standard library is needed to check the hash chain; checkpoint signatures are
checked when the `cryptography` package is installed (pass --require-signatures to insist).
"""
import base64
import hashlib
import json
import os
import struct
import sys

GENESIS = bytes(32)
FIELDS = ["actor_kind", "actor_id", "actor_role", "action", "entity_type", "entity_id",
          "changes", "reason", "request_id", "ip", "user_agent"]


def field(value):
    if value is None:
        return b"\xff\xff\xff\xff"
    data = value.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def canonical(ev):
    out = [b"CSAUDIT1", field(ev["chain"]), field(str(ev["seq"])), field(str(ev["occurred_at_us"]))]
    out += [field(ev.get(name)) for name in FIELDS]
    return b"".join(out)


# SubjectPublicKeyInfo DER of an Ed25519 key, before its 32 raw bytes.
SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")


def load_keys(bundle):
    """Key id -> raw public key, from public-keys.pem (one PEM block per key, each after a
    '# key id ...' line), or public-key.pem in a bundle from before key rotation. A block whose
    label is not its key's id raises ValueError: somebody relabelled a key."""
    name = "public-keys.pem"
    if not os.path.exists(os.path.join(bundle, name)):
        name = "public-key.pem"
    with open(os.path.join(bundle, name)) as f:
        text = f.read()
    keys, label, block = {}, None, None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("# key id "):
            label = s[len("# key id "):].strip()
        elif s.startswith("-----BEGIN"):
            block = []
        elif s.startswith("-----END") and block is not None:
            der = base64.b64decode("".join(block))
            if len(der) != 44 or not der.startswith(SPKI_ED25519):
                raise ValueError(f"{name}: not an Ed25519 public key")
            raw = der[12:]
            kid = hashlib.sha256(raw).hexdigest()[:16]
            if label is not None and label != kid:
                raise ValueError(f"{name}: the key labelled {label} has key id {kid}: its key id label is forged")
            keys[kid] = raw
            label, block = None, None
        elif block is not None:
            block.append(s)
    if not keys:
        raise ValueError(f"{name}: no public key")
    return keys


def signature_checker():
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None
    return Ed25519PublicKey.from_public_bytes


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    require_sigs = "--require-signatures" in argv
    bundle = args[0] if args else "."
    with open(os.path.join(bundle, "manifest.json")) as f:
        manifest = json.load(f)
    chain = manifest["tenant"]

    def broken(seq, why):
        print(f"BROKEN chain {manifest.get('tenant_slug', chain)} ({chain}) at seq {seq}: {why}")
        return 1

    for name, digest in manifest["files"].items():
        with open(os.path.join(bundle, name), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != digest:
                return broken(0, f"{name} does not match the manifest digest")

    try:
        keys = load_keys(bundle)
    except ValueError as e:
        return broken(0, str(e))
    checker = signature_checker()
    if checker is None and require_sigs:
        print("cannot check signatures: install the 'cryptography' package")
        return 2
    signed, unknown = {}, {}
    with open(os.path.join(bundle, "checkpoints.ndjson")) as f:
        for line in f:
            if not line.strip():
                continue
            cp = json.loads(line)
            if cp["chain"] != chain:
                return broken(cp["seq"], "checkpoint belongs to another chain")
            raw = keys.get(cp["key_id"])
            if raw is None:
                # Not proof of tampering, but not verified either: the signer's key is not here.
                unknown.setdefault(cp["key_id"], cp["seq"])
                continue
            if checker is not None:
                msg = "countersign-checkpoint-v1\n{}\n{}\n{}\n{}\n".format(
                    cp["chain"], cp["seq"], cp["hash"], cp["signed_at_us"]).encode()
                try:
                    checker(raw).verify(bytes.fromhex(cp["signature"]), msg)
                except Exception:
                    return broken(cp["seq"], "checkpoint signature is invalid (forged)")
            signed[cp["seq"]] = cp["hash"]

    prev, expected_seq, count = None, None, 0
    with open(os.path.join(bundle, "events.ndjson")) as f:
        for line in f:
            if not line.strip():
                continue
            ev = json.loads(line)
            count += 1
            if ev["chain"] != chain:
                return broken(ev["seq"], "event belongs to another chain")
            if prev is None:
                prev = bytes.fromhex(ev["prev_hash"])
                if ev["seq"] == 1 and prev != GENESIS:
                    return broken(1, "first event does not start from the zero hash")
            elif ev["seq"] != expected_seq:
                return broken(expected_seq, f"event {expected_seq} is missing")
            if bytes.fromhex(ev["prev_hash"]) != prev:
                return broken(ev["seq"], "prev_hash does not link to the previous event")
            digest = hashlib.sha256(prev + canonical(ev)).digest()
            if digest.hex() != ev["hash"]:
                return broken(ev["seq"], "contents do not match the stored hash (event altered)")
            if ev["seq"] in signed and signed[ev["seq"]] != ev["hash"]:
                return broken(ev["seq"], "chain disagrees with the signed checkpoint")
            prev, expected_seq = digest, ev["seq"] + 1

    if count != manifest["events"]:
        return broken(expected_seq or 1, f"manifest says {manifest['events']} events, bundle has {count}")
    if unknown:
        for kid, seq in unknown.items():
            print(f"UNVERIFIED chain {manifest.get('tenant_slug', chain)}: checkpoints from seq {seq} are signed by "
                  f"key {kid}, which the bundle does not carry; their signatures were not checked")
        return 4
    sigs = "checked" if checker is not None else "NOT checked (install 'cryptography')"
    print(f"OK chain {manifest.get('tenant_slug', chain)}: {count} events, {len(signed)} checkpoints, "
          f"keys {', '.join(keys)}, signatures {sigs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
