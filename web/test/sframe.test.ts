// RFC 9605 SFrame over WebCrypto against the RFC's own test vectors.
import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex, toHex } from "../src/bytes.js";
import { HeaderError, OpenError } from "../src/errors.js";
import { Aead, KeyContext, decodeHeader, deriveKeySalt, encodeHeader, suite } from "../src/sframe.js";
import { big, readJson } from "./util.js";

const vectors = readJson("crates/sealroom-crypto/tests/data/rfc9605-test-vectors.json");

test("every header vector encodes and decodes", () => {
  assert.ok(vectors.header.length >= 289);
  for (const v of vectors.header) {
    const header = { kid: big(v.kid), ctr: big(v.ctr) };
    assert.equal(toHex(encodeHeader(header)), v.encoded);
    const [decoded, len] = decodeHeader(fromHex(v.encoded + "ff"));
    assert.deepEqual(decoded, header);
    assert.equal(len, v.encoded.length / 2);
  }
});

test("non-minimal and cut-short headers are refused with their kind", () => {
  const kind = (hex: string) => {
    try {
      decodeHeader(fromHex(hex));
    } catch (err) {
      assert.ok(err instanceof HeaderError);
      return err.kind;
    }
    return "decoded";
  };
  assert.equal(kind(""), "truncated");
  assert.equal(kind("80 07".replace(" ", "")), "non_minimal_kid");
  assert.equal(kind("9000ff"), "non_minimal_kid");
  assert.equal(kind("0805"), "non_minimal_ctr");
  assert.equal(kind("9101"), "truncated");
});

test("the AES-CTR + HMAC AEAD matches the RFC's vectors", async () => {
  assert.equal(vectors.aes_ctr_hmac.length, 3);
  for (const v of vectors.aes_ctr_hmac) {
    const aead = await Aead.import(suite(v.cipher_suite), fromHex(v.key));
    const ct = await aead.encrypt(fromHex(v.nonce), fromHex(v.aad), fromHex(v.pt));
    assert.equal(toHex(ct), v.ct, `suite ${v.cipher_suite}`);
    const pt = await aead.decrypt(fromHex(v.nonce), fromHex(v.aad), fromHex(v.ct));
    assert.equal(toHex(pt), v.pt);
  }
});

test("all five suites derive, seal and open as the RFC's SFrame vectors", async () => {
  assert.deepEqual(
    vectors.sframe.map((v: { cipher_suite: number }) => v.cipher_suite),
    [1, 2, 3, 4, 5],
  );
  for (const v of vectors.sframe) {
    const s = suite(v.cipher_suite);
    const kid = big(v.kid);
    const { key, salt } = await deriveKeySalt(s, kid, fromHex(v.base_key));
    assert.equal(toHex(key), v.sframe_key, s.name);
    assert.equal(toHex(salt), v.sframe_salt, s.name);
    const ctx = await KeyContext.derive(s, kid, fromHex(v.base_key));
    assert.equal(toHex(ctx.nonce(big(v.ctr))), v.nonce);
    const sealed = await ctx.seal(big(v.ctr), fromHex(v.metadata), fromHex(v.pt));
    assert.equal(toHex(sealed), v.ct, s.name);
    const [header, len] = decodeHeader(sealed);
    const opened = await ctx.open(header, len, sealed, fromHex(v.metadata));
    assert.equal(toHex(opened), v.pt);
    // Any flipped bit in header, ciphertext or tag, or other metadata, fails to open.
    for (const at of [0, len, sealed.length - 1]) {
      const bad = sealed.slice();
      bad[at]! ^= 0x01;
      await assert.rejects(
        async () => {
          const [h, l] = decodeHeader(bad);
          await ctx.open(h, l, bad, fromHex(v.metadata));
        },
        (err: unknown) => err instanceof OpenError || err instanceof HeaderError,
      );
    }
    await assert.rejects(ctx.open(header, len, sealed, fromHex(v.metadata + "00")), OpenError);
  }
});

test("a key context writes the same header as the codec for every CTR width", async () => {
  for (const kid of [0n, 7n, 8n, 291n, 0xfedcba9876543210n]) {
    const ctx = await KeyContext.derive(suite(4), kid, new Uint8Array(32));
    for (const ctr of [0n, 7n, 8n, 255n, 256n, 65535n, 65536n, 0xffffffffn, 0x100000000n, 0xffffffffffffffffn]) {
      assert.equal(toHex(ctx.header(ctr)), toHex(encodeHeader({ kid, ctr })), `kid ${kid} ctr ${ctr}`);
      assert.deepEqual(decodeHeader(ctx.header(ctr))[0], { kid, ctr });
    }
  }
});
