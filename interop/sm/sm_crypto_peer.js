// An independent SM implementation's side of Baomi's interop test (issue 24): sm-crypto (npm,
// JavaScript). Reads Baomi's key, messages, signatures and ciphertext as JSON on stdin; writes
// what sm-crypto makes of them, and its own, as JSON on stdout. Hex everywhere; public keys
// `04 || x || y`, signatures raw `r || s`, ciphertext C1 || C3 || C2.
'use strict'
const { sm2, sm3, sm4 } = require('sm-crypto')

const bytes = (hex) => Array.from(Buffer.from(hex, 'hex'))
const hex = (arr) => Buffer.from(arr).toString('hex')

let input = ''
process.stdin.on('data', (c) => { input += c })
process.stdin.on('end', () => {
  const req = JSON.parse(input)
  const pub = req.public_key
  const out = { implementation: 'sm-crypto ' + require('sm-crypto/package.json').version }
  // SM3 over Z_A || M with the default ID 1234567812345678 (hash: true is the default).
  out.verifies_ours = req.signed.map((s) =>
    sm2.doVerifySignature(bytes(s.message), s.signature, pub, { hash: true }))
  out.verifies_altered = req.signed.map((s) =>
    sm2.doVerifySignature(bytes(s.message + '78'), s.signature, pub, { hash: true }))
  // sm-crypto reads C1 without its 04 and adds it back itself.
  out.opens_ours = hex(sm2.doDecrypt(req.sealed.slice(2), req.private_key, 1, { output: 'array' }))
  out.their_signatures = req.signed.map((s) =>
    sm2.doSignature(bytes(s.message), req.private_key, { hash: true, publicKey: pub }))
  out.their_sealed = sm2.doEncrypt(bytes(req.batch_key), pub, 1)
  out.sm3 = sm3(bytes(req.data))
  out.hmac_sm3 = sm3(bytes(req.data), { key: req.hmac_key })
  out.sm4_block = sm4.encrypt(bytes(req.data).slice(0, 16), req.sm4_key, { padding: 'none' })
  out.sm4_blocks = sm4.encrypt(bytes(req.sm4_blocks), req.sm4_key, { padding: 'none' })
  process.stdout.write(JSON.stringify(out))
})
