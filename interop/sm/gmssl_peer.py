"""An independent SM implementation's side of Baomi's interop test (issue 24): GmSSL for
Python (`gmssl` on PyPI, pure Python). Reads Baomi's key, messages, signatures and
ciphertext as JSON on stdin; writes what gmssl makes of them, and its own, as JSON on stdout.
Hex everywhere; public keys `04 || x || y`, signatures raw `r || s`, ciphertext C1 || C3 || C2.
"""

import json
import secrets
import sys

from gmssl import sm2, sm3, sm4, func


def main() -> None:
    req = json.load(sys.stdin)
    d, pub = req["private_key"], req["public_key"]
    ours = sm2.CryptSM2(private_key=d, public_key=pub, mode=1)
    # gmssl drops the 04 prefix with `lstrip("04")`, which also eats any leading 0s and 4s of
    # x (one key in ~8): set the 128 hex digits of x || y directly.
    ours.public_key = pub[2:]
    out = {"implementation": "gmssl"}
    # Baomi's signatures over a real bundle's and a real custody record's signed bytes.
    out["verifies_ours"] = [
        bool(ours.verify_with_sm3(s["signature"], bytes.fromhex(s["message"])))
        for s in req["signed"]
    ]
    # The same signatures with one byte of the message changed must not verify.
    out["verifies_altered"] = [
        bool(ours.verify_with_sm3(s["signature"], bytes.fromhex(s["message"]) + b"x"))
        for s in req["signed"]
    ]
    # Baomi's sealed batch key (gmssl reads C1 without its 04).
    out["opens_ours"] = ours.decrypt(bytes.fromhex(req["sealed"][2:])).hex()
    # Its own: a signature over each message (k from the OS's CSPRNG, not gmssl's default)
    # and the batch key sealed to Baomi's public key.
    out["their_signatures"] = [
        ours.sign_with_sm3(bytes.fromhex(s["message"]), secrets.token_hex(32))
        for s in req["signed"]
    ]
    out["their_sealed"] = ours.encrypt(bytes.fromhex(req["batch_key"])).hex()
    data = bytes.fromhex(req["data"])
    out["sm3"] = sm3.sm3_hash(func.bytes_to_list(data))
    cipher = sm4.CryptSM4(padding_mode=sm4.ZERO)
    cipher.set_key(bytes.fromhex(req["sm4_key"]), sm4.SM4_ENCRYPT)
    out["sm4_block"] = cipher.crypt_ecb(data[:16]).hex()[:32]
    blocks = bytes.fromhex(req["sm4_blocks"])
    out["sm4_blocks"] = cipher.crypt_ecb(blocks).hex()[: 2 * len(blocks)]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
