/**
 * RFC 9605 SFrame over WebCrypto: the header, the five cipher suites, key and salt
 * derivation (section 4.4.2), and sealing and opening one frame with a key context. The
 * metadata a sealroom frame authenticates is its envelope's first 28 bytes.
 */

import { bigEndian, buf, concat } from "./bytes.js";
import { HeaderError, OpenError } from "./errors.js";

const subtle = globalThis.crypto.subtle;

/** An RFC 9605 cipher suite. */
export interface CipherSuite {
  /** The IANA id (1-5). */
  readonly id: number;
  readonly name: string;
  /** `AEAD.Nk`: key bytes (for the CTR+HMAC suites, encryption and authentication keys). */
  readonly nk: number;
  /** `AEAD.Nn`: nonce bytes. */
  readonly nn: number;
  /** `AEAD.Nt`: tag bytes. */
  readonly nt: number;
  /** The KDF's hash. */
  readonly hash: "SHA-256" | "SHA-512";
  /** AES-CTR with a truncated HMAC tag, rather than AES-GCM. */
  readonly ctrHmac: boolean;
}

/** The five suites of RFC 9605 section 4.5, by id. */
export const SUITES: Readonly<Record<number, CipherSuite>> = {
  1: { id: 1, name: "AES_128_CTR_HMAC_SHA256_80", nk: 48, nn: 12, nt: 10, hash: "SHA-256", ctrHmac: true },
  2: { id: 2, name: "AES_128_CTR_HMAC_SHA256_64", nk: 48, nn: 12, nt: 8, hash: "SHA-256", ctrHmac: true },
  3: { id: 3, name: "AES_128_CTR_HMAC_SHA256_32", nk: 48, nn: 12, nt: 4, hash: "SHA-256", ctrHmac: true },
  4: { id: 4, name: "AES_128_GCM_SHA256_128", nk: 16, nn: 12, nt: 16, hash: "SHA-256", ctrHmac: false },
  5: { id: 5, name: "AES_256_GCM_SHA512_128", nk: 32, nn: 12, nt: 16, hash: "SHA-512", ctrHmac: false },
};

/** The suite sealroom uses on the wire (`CipherSuite::default()`): AES-128-GCM. */
export const DEFAULT_SUITE: CipherSuite = SUITES[4]!;

/** The suite with IANA id `id`; throws `RangeError` for another id. */
export function suite(id: number): CipherSuite {
  const s = SUITES[id];
  if (!s) throw new RangeError(`unknown cipher suite ${id}`);
  return s;
}

const U64_MAX = 0xffffffffffffffffn;

/** Bytes a non-negative number below 2^32 needs (1-4). */
function smallLen(v: number): number {
  return v < 0x100 ? 1 : v < 0x10000 ? 2 : v < 0x1000000 ? 3 : 4;
}

/** Bytes `value` needs in the extended form (1-8), without bigint loops. */
function extendedLen(value: bigint): number {
  if (value <= 0xffffffffn) return smallLen(Number(value));
  return 4 + smallLen(Number(value >> 32n));
}

/** An SFrame header (RFC 9605 section 4.3): the KID and the CTR. */
export interface SframeHeader {
  kid: bigint;
  ctr: bigint;
}

/** The shortest encoding of a header. */
export function encodeHeader(header: SframeHeader): Uint8Array {
  const { kid, ctr } = header;
  if (kid < 0n || kid > U64_MAX || ctr < 0n || ctr > U64_MAX) {
    throw new RangeError("kid and ctr are unsigned 64-bit integers");
  }
  let config = 0;
  const parts: Uint8Array[] = [];
  if (kid <= 7n) {
    config |= Number(kid) << 4;
  } else {
    const len = extendedLen(kid);
    config |= 0x80 | ((len - 1) << 4);
    parts.push(bigEndian(kid, len));
  }
  if (ctr <= 7n) {
    config |= Number(ctr);
  } else {
    const len = extendedLen(ctr);
    config |= 0x08 | (len - 1);
    parts.push(bigEndian(ctr, len));
  }
  return concat(Uint8Array.of(config), ...parts);
}

function readField(
  ext: boolean,
  bits: number,
  input: Uint8Array,
  at: number,
  nonMinimal: "non_minimal_kid" | "non_minimal_ctr",
): [bigint, number] {
  if (!ext) return [BigInt(bits), at];
  const len = bits + 1;
  if (input.length < at + len) {
    throw new HeaderError(
      "truncated",
      `truncated sframe header: need ${at + len} bytes, have ${input.length}`,
    );
  }
  // Two 32-bit halves, then one bigint.
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < len; i++) {
    hi = ((hi << 8) | (lo >>> 24)) >>> 0;
    lo = ((lo << 8) | input[at + i]!) >>> 0;
  }
  const value = hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
  if (value <= 7n || extendedLen(value) !== len) {
    throw new HeaderError(nonMinimal, `non-minimal sframe ${nonMinimal.slice(12)} encoding`);
  }
  return [value, at + len];
}

/** Decode a header from the start of `input`; returns it and its length. */
export function decodeHeader(input: Uint8Array): [SframeHeader, number] {
  const config = input[0];
  if (config === undefined) {
    throw new HeaderError("truncated", "truncated sframe header: need 1 bytes, have 0");
  }
  const [kid, afterKid] = readField(
    (config & 0x80) !== 0,
    (config >> 4) & 7,
    input,
    1,
    "non_minimal_kid",
  );
  const [ctr, end] = readField((config & 0x08) !== 0, config & 7, input, afterKid, "non_minimal_ctr");
  return [{ kid, ctr }, end];
}

/** HMAC of `data` under `key` with `hash`. */
async function hmac(hash: string, key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const k = await subtle.importKey("raw", buf(key), { name: "HMAC", hash }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, buf(data)));
}

/** HKDF-Extract (RFC 5869); an empty salt is a string of hash-length zeros. */
export async function hkdfExtract(
  hash: "SHA-256" | "SHA-512",
  salt: Uint8Array,
  ikm: Uint8Array,
): Promise<Uint8Array> {
  const key = salt.length > 0 ? salt : new Uint8Array(hash === "SHA-256" ? 32 : 64);
  return hmac(hash, key, ikm);
}

/** HKDF-Expand (RFC 5869) of `len` bytes. */
export async function hkdfExpand(
  hash: "SHA-256" | "SHA-512",
  prk: Uint8Array,
  info: Uint8Array,
  len: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(len);
  let previous: Uint8Array = new Uint8Array(0);
  for (let at = 0, i = 1; at < len; i++) {
    previous = await hmac(hash, prk, concat(previous, info, Uint8Array.of(i)));
    out.set(previous.subarray(0, Math.min(previous.length, len - at)), at);
    at += previous.length;
  }
  return out;
}

const KEY_LABEL = new TextEncoder().encode("SFrame 1.0 Secret key ");
const SALT_LABEL = new TextEncoder().encode("SFrame 1.0 Secret salt ");

/** The key and salt of `kid` from its base key (RFC 9605 section 4.4.2). */
export async function deriveKeySalt(
  s: CipherSuite,
  kid: bigint,
  baseKey: Uint8Array,
): Promise<{ key: Uint8Array; salt: Uint8Array }> {
  const secret = await hkdfExtract(s.hash, new Uint8Array(0), baseKey);
  const context = concat(bigEndian(kid, 8), bigEndian(BigInt(s.id), 2));
  const key = await hkdfExpand(s.hash, secret, concat(KEY_LABEL, context), s.nk);
  const salt = await hkdfExpand(s.hash, secret, concat(SALT_LABEL, context), s.nn);
  return { key, salt };
}

/** The AEAD of one key: AES-GCM, or AES-CTR with a truncated HMAC (RFC 9605 4.5.1). */
export class Aead {
  private constructor(
    readonly suite: CipherSuite,
    private readonly enc: CryptoKey,
    private readonly auth: CryptoKey | null,
  ) {}

  /** The AES-GCM key, for callers that call WebCrypto directly on the hot path; `null` for
   * the AES-CTR suites. */
  get gcmKey(): CryptoKey | null {
    return this.suite.ctrHmac ? null : this.enc;
  }

  /** Import `key` (`suite.nk` bytes) for `suite`. */
  static async import(s: CipherSuite, key: Uint8Array): Promise<Aead> {
    if (key.length !== s.nk) throw new RangeError(`a ${s.name} key is ${s.nk} bytes`);
    if (!s.ctrHmac) {
      const enc = await subtle.importKey("raw", buf(key), "AES-GCM", false, ["encrypt", "decrypt"]);
      return new Aead(s, enc, null);
    }
    const enc = await subtle.importKey("raw", buf(key.slice(0, 16)), "AES-CTR", false, [
      "encrypt",
      "decrypt",
    ]);
    const auth = await subtle.importKey(
      "raw",
      buf(key.slice(16)),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    return new Aead(s, enc, auth);
  }

  private async tag(nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Promise<Uint8Array> {
    const lens = concat(
      bigEndian(BigInt(aad.length), 8),
      bigEndian(BigInt(ct.length), 8),
      bigEndian(BigInt(this.suite.nt), 8),
    );
    const mac = await subtle.sign("HMAC", this.auth!, buf(concat(lens, nonce, aad, ct)));
    return new Uint8Array(mac, 0, this.suite.nt);
  }

  /** `ciphertext || tag` of `pt`. */
  async encrypt(nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Promise<Uint8Array> {
    if (!this.suite.ctrHmac) {
      const out = await subtle.encrypt(
        { name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad), tagLength: 128 },
        this.enc,
        buf(pt),
      );
      return new Uint8Array(out);
    }
    // The tag needs the nonce and AAD after an await: copy them first (callers reuse them).
    const n = nonce.slice();
    const a = aad.slice();
    const counter = concat(n, new Uint8Array(4));
    const ct = new Uint8Array(
      await subtle.encrypt({ name: "AES-CTR", counter: buf(counter), length: 32 }, this.enc, buf(pt)),
    );
    return concat(ct, await this.tag(n, a, ct));
  }

  /** The plaintext of `ciphertext || tag`; throws {@link OpenError} when it does not authenticate. */
  async decrypt(nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Promise<Uint8Array> {
    const nt = this.suite.nt;
    if (sealed.length < nt) throw new OpenError("malformed", "malformed sframe");
    if (!this.suite.ctrHmac) {
      try {
        const out = await subtle.decrypt(
          { name: "AES-GCM", iv: buf(nonce), additionalData: buf(aad), tagLength: 128 },
          this.enc,
          buf(sealed),
        );
        return new Uint8Array(out);
      } catch {
        throw new OpenError("authentication_failed", "authentication failed");
      }
    }
    const ct = sealed.subarray(0, sealed.length - nt);
    // The counter needs the nonce after an await: copy it first (callers reuse it).
    const counter = concat(nonce, new Uint8Array(4));
    const expected = await this.tag(nonce, aad, ct);
    const got = sealed.subarray(sealed.length - nt);
    let diff = 0;
    for (let i = 0; i < nt; i++) diff |= expected[i]! ^ got[i]!;
    if (diff !== 0) throw new OpenError("authentication_failed", "authentication failed");
    return new Uint8Array(
      await subtle.decrypt({ name: "AES-CTR", counter: buf(counter), length: 32 }, this.enc, buf(ct)),
    );
  }
}

const toBytes = (out: ArrayBuffer): Uint8Array => new Uint8Array(out);
const authenticationFailed = (): never => {
  throw new OpenError("authentication_failed", "authentication failed");
};

/** Bytes the CTR needs in a header: 0 when it fits the config byte, else 1-8. */
function ctrLen(hi: number, lo: number): number {
  if (hi !== 0) return 4 + smallLen(hi);
  return lo <= 7 ? 0 : smallLen(lo);
}

/** The two 32-bit halves of a 64-bit CTR. */
function halves(ctr: bigint): [number, number] {
  if (ctr < 0n || ctr > U64_MAX) throw new RangeError("ctr is an unsigned 64-bit integer");
  return [Number(ctr >> 32n), Number(ctr & 0xffffffffn)];
}

/**
 * One KID's key and salt, ready to seal and open (RFC 9605 section 4.4.3).
 *
 * The per-frame work allocates only what it returns: the KID's part of the header is encoded
 * once, and the nonce and AAD are assembled in buffers the context keeps. Reusing them across
 * frames in flight is safe because WebCrypto copies its inputs before `encrypt` and `decrypt`
 * return their promises (the AES-CTR suites copy them at entry, see {@link Aead}).
 */
export class KeyContext {
  /** The config byte's KID bits and the KID's extended bytes. */
  private readonly kidConfig: number;
  private readonly kidBytes: Uint8Array;
  /** The last 8 bytes of the salt as two 32-bit halves (the CTR is XORed into them). */
  private readonly saltHi: number;
  private readonly saltLo: number;
  private readonly nonceBuf: Uint8Array<ArrayBuffer>;
  private readonly nonceView: DataView;
  /** Scratch for `header || metadata`, grown for longer metadata. */
  private aadBuf: Uint8Array<ArrayBuffer> = new Uint8Array(64);
  /** The AES-GCM suites call WebCrypto directly: one promise layer less per frame. */
  private readonly gcmKey: CryptoKey | null;

  private constructor(
    readonly suite: CipherSuite,
    readonly kid: bigint,
    private readonly aead: Aead,
    private readonly salt: Uint8Array,
  ) {
    const full = encodeHeader({ kid, ctr: 0n });
    this.kidConfig = full[0]!;
    this.kidBytes = full.slice(1);
    const at = salt.length - 8;
    const view = new DataView(salt.buffer, salt.byteOffset, salt.byteLength);
    this.saltHi = view.getUint32(at);
    this.saltLo = view.getUint32(at + 4);
    this.nonceBuf = new Uint8Array(salt);
    this.nonceView = new DataView(this.nonceBuf.buffer);
    this.gcmKey = aead.gcmKey;
  }

  /** The context of `kid` from its base key. */
  static async derive(s: CipherSuite, kid: bigint, baseKey: Uint8Array): Promise<KeyContext> {
    const { key, salt } = await deriveKeySalt(s, kid, baseKey);
    return new KeyContext(s, kid, await Aead.import(s, key), salt);
  }

  /** The nonce of `ctr`: the salt XOR the CTR, right-aligned. */
  nonce(ctr: bigint): Uint8Array {
    const [hi, lo] = halves(ctr);
    return this.setNonce(hi, lo).slice();
  }

  /** The encoded header of `ctr` under this KID. */
  header(ctr: bigint): Uint8Array {
    const [hi, lo] = halves(ctr);
    const out = new Uint8Array(1 + this.kidBytes.length + ctrLen(hi, lo));
    this.writeHeader(out, 0, hi, lo);
    return out;
  }

  /** The context's nonce buffer set to the nonce of CTR `hi:lo`. The CTR is 64 bits and
   * the nonce 12 bytes, so only the last 8 bytes change. */
  private setNonce(hi: number, lo: number): Uint8Array<ArrayBuffer> {
    const at = this.nonceBuf.length - 8;
    this.nonceView.setUint32(at, (this.saltHi ^ hi) >>> 0);
    this.nonceView.setUint32(at + 4, (this.saltLo ^ lo) >>> 0);
    return this.nonceBuf;
  }

  /** Write the header of CTR `hi:lo` into `out` at `at`; returns its length. */
  private writeHeader(out: Uint8Array, at: number, hi: number, lo: number): number {
    const len = ctrLen(hi, lo);
    const kidLen = this.kidBytes.length;
    out[at] = len === 0 ? this.kidConfig | lo : this.kidConfig | 0x08 | (len - 1);
    out.set(this.kidBytes, at + 1);
    let end = at + 1 + kidLen + len;
    // Big-endian CTR bytes, lowest last.
    let v = lo;
    for (let i = 0; i < Math.min(len, 4); i++) {
      out[--end] = v & 0xff;
      v >>>= 8;
    }
    v = hi;
    for (let i = 4; i < len; i++) {
      out[--end] = v & 0xff;
      v >>>= 8;
    }
    return 1 + kidLen + len;
  }

  /** The scratch AAD view of `len` bytes. */
  private aad(len: number): Uint8Array<ArrayBuffer> {
    if (this.aadBuf.length < len) this.aadBuf = new Uint8Array(Math.max(len, 2 * this.aadBuf.length));
    return this.aadBuf.subarray(0, len);
  }

  /** `header || ciphertext || tag` of `plaintext` under `ctr`, authenticating `metadata`. */
  async seal(ctr: bigint, metadata: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    const [hi, lo] = halves(ctr);
    return this.sealAt(hi, lo, metadata, plaintext, 0);
  }

  /**
   * {@link seal} with the CTR as two 32-bit halves, into a new array with `prefix` bytes
   * left free in front of the SFrame ciphertext (where a caller puts its envelope).
   */
  async sealAt(hi: number, lo: number, metadata: Uint8Array, plaintext: Uint8Array, prefix: number): Promise<Uint8Array> {
    const headerLen = 1 + this.kidBytes.length + ctrLen(hi, lo);
    const aad = this.aad(headerLen + metadata.length);
    this.writeHeader(aad, 0, hi, lo);
    aad.set(metadata, headerLen);
    const nonce = this.setNonce(hi, lo);
    const sealed =
      this.gcmKey !== null
        ? new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, this.gcmKey, buf(plaintext)))
        : await this.aead.encrypt(nonce, aad, plaintext);
    // The AAD buffer may hold another frame's header by now: write this one again.
    const out = new Uint8Array(prefix + headerLen + sealed.length);
    this.writeHeader(out, prefix, hi, lo);
    out.set(sealed, prefix + headerLen);
    return out;
  }

  /** The plaintext of an SFrame ciphertext whose header is `header` (already decoded, of
   * `headerLen` bytes); throws {@link OpenError}. */
  open(
    header: SframeHeader,
    headerLen: number,
    sframe: Uint8Array,
    metadata: Uint8Array,
  ): Promise<Uint8Array> {
    // The AAD uses the header as received: decoding accepts only the one encoding.
    const aad = this.aad(headerLen + metadata.length);
    for (let i = 0; i < headerLen; i++) aad[i] = sframe[i]!;
    aad.set(metadata, headerLen);
    const ctr = header.ctr;
    const nonce =
      ctr <= 0xffffffffn ? this.setNonce(0, Number(ctr)) : this.setNonce(Number(ctr >> 32n), Number(ctr & 0xffffffffn));
    const sealed = sframe.subarray(headerLen);
    if (this.gcmKey === null) return this.aead.decrypt(nonce, aad, sealed);
    if (sealed.length < this.suite.nt) return Promise.reject(new OpenError("malformed", "malformed sframe"));
    return subtle
      .decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, this.gcmKey, buf(sealed))
      .then(toBytes, authenticationFailed);
  }
}
