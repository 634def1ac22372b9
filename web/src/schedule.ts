/**
 * The room key schedule, byte for byte as `sealroom_crypto::schedule`:
 *
 * ```text
 * room_prk     = HKDF-Extract(salt = "sealroom 1.0 room", ikm = room secret)        SHA-256
 * epoch_secret = HKDF-Expand(room_prk, "sealroom 1.0 epoch " || suite(2) || epoch(8), 32)
 * base_key     = HKDF-Expand(epoch_secret, "sealroom 1.0 sender " || kid(8), 32)
 * key, salt    = RFC 9605 derive_key_salt(kid, base_key)
 * ```
 *
 * A KID is 64 bits: the low 4 bits are the epoch modulo 16, the high 60 bits a sending
 * session id each sealer draws at random, so no two sealers share a (key, nonce) however
 * often a page reloads or rejoins.
 */

import { bigEndian, concat } from "./bytes.js";
import { OpenError, SealError } from "./errors.js";
import { type CipherSuite, DEFAULT_SUITE, KeyContext, decodeHeader, hkdfExpand, hkdfExtract } from "./sframe.js";

/** Bytes of a room secret. */
export const ROOM_SECRET_LEN = 32;
/** KID bits that carry the epoch. */
export const EPOCH_BITS = 4n;
const EPOCH_MASK = (1n << EPOCH_BITS) - 1n;
const SESSION_MASK = (1n << (64n - EPOCH_BITS)) - 1n;
/** CTRs a replay window spans behind the highest opened. */
export const REPLAY_WINDOW = 1024n;

const enc = new TextEncoder();
const ROOM_SALT = enc.encode("sealroom 1.0 room");
const EPOCH_LABEL = enc.encode("sealroom 1.0 epoch ");
const SENDER_LABEL = enc.encode("sealroom 1.0 sender ");

/** The KID of `session` in `epoch`. */
export function makeKid(epoch: bigint, session: bigint): bigint {
  return ((session & SESSION_MASK) << EPOCH_BITS) | (epoch & EPOCH_MASK);
}

/** The epoch bits of a KID. */
export function kidEpochBits(kid: bigint): bigint {
  return kid & EPOCH_MASK;
}

/** A fresh 60-bit sending session id from the platform's CSPRNG. */
export function randomSession(): bigint {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(8));
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v & SESSION_MASK;
}

/** Derives the keys of a room from its secret. Holds only the extracted room key. */
export class KeySchedule {
  private constructor(
    readonly suite: CipherSuite,
    private readonly roomPrk: Uint8Array,
  ) {}

  /** The schedule of a 32-byte room secret for `suite` (AES-128-GCM unless told). */
  static async create(secret: Uint8Array, s: CipherSuite = DEFAULT_SUITE): Promise<KeySchedule> {
    if (secret.length !== ROOM_SECRET_LEN) {
      throw new RangeError(`a room secret is ${ROOM_SECRET_LEN} bytes, not ${secret.length}`);
    }
    return new KeySchedule(s, await hkdfExtract("SHA-256", ROOM_SALT, secret));
  }

  /** The epoch secret (exposed for cross-language tests). */
  async epochSecret(epoch: bigint): Promise<Uint8Array> {
    const info = concat(EPOCH_LABEL, bigEndian(BigInt(this.suite.id), 2), bigEndian(epoch, 8));
    return hkdfExpand("SHA-256", this.roomPrk, info, 32);
  }

  /** The base key of `kid` in `epoch` (exposed for cross-language tests). */
  async baseKey(epoch: bigint, kid: bigint): Promise<Uint8Array> {
    const epochSecret = await this.epochSecret(epoch);
    return hkdfExpand("SHA-256", epochSecret, concat(SENDER_LABEL, bigEndian(kid, 8)), 32);
  }

  /** The extracted room key (exposed for cross-language tests). */
  get prk(): Uint8Array {
    return this.roomPrk.slice();
  }

  /** The key context of `kid` in `epoch`. */
  async keyContext(epoch: bigint, kid: bigint): Promise<KeyContext> {
    return KeyContext.derive(this.suite, kid, await this.baseKey(epoch, kid));
  }

  /** A sealer for a new sending session in `epoch`, with a random session id. */
  async sealer(epoch = 0n, session: bigint = randomSession()): Promise<Sealer> {
    const kid = makeKid(epoch, session);
    return new Sealer(await this.keyContext(epoch, kid));
  }

  /** An opener for frames of `epoch` (and of the next, for senders that rotate first). */
  opener(epoch = 0n, maxSenders = 256): Opener {
    return new Opener(this, epoch, maxSenders);
  }
}

/** Seals one sending session's frames, with a CTR that never repeats. */
export class Sealer {
  /** The next CTR as two 32-bit halves (no bigint arithmetic per frame). */
  private ctrHi = 0;
  private ctrLo = 0;
  constructor(private readonly ctx: KeyContext) {}

  /** The KID this sealer writes. */
  get kid(): bigint {
    return this.ctx.kid;
  }

  /**
   * The SFrame ciphertext of `plaintext`, authenticating `metadata`. With `prefix`, the
   * ciphertext starts `prefix` bytes into the returned array and the bytes before it are
   * left for the caller (the client writes the envelope there rather than copying).
   */
  seal(metadata: Uint8Array, plaintext: Uint8Array, prefix = 0): Promise<Uint8Array> {
    // Not `async`: the context's promise is returned as it is (one promise less per frame).
    const hi = this.ctrHi;
    const lo = this.ctrLo;
    if (hi === 0xffffffff && lo === 0xffffffff) {
      return Promise.reject(new SealError("rotation_required", "the key's counter is exhausted: rotate"));
    }
    if (lo === 0xffffffff) {
      this.ctrHi = hi + 1;
      this.ctrLo = 0;
    } else {
      this.ctrLo = lo + 1;
    }
    return this.ctx.sealAt(hi, lo, metadata, plaintext, prefix);
  }

  /** Continue from `ctr` (tests only: a CTR already used breaks the cipher). */
  setNextCtrForTests(ctr: bigint): void {
    this.ctrHi = Number(ctr >> 32n);
    this.ctrLo = Number(ctr & 0xffffffffn);
  }

  /** Seal with a chosen CTR (tests and vectors only: a reused CTR breaks the cipher). */
  async sealWithCtrForTests(ctr: bigint, metadata: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    return this.ctx.seal(ctr, metadata, plaintext);
  }
}

/** Which CTRs of one KID were opened, within {@link REPLAY_WINDOW} of the highest: the
 * same decisions as sealroom-crypto's window. The bitmap is a ring indexed by the CTR
 * modulo the window, so a frame that moves the window on by one clears one bit rather than
 * shifting the whole map. */
export class ReplayWindow {
  private highest = -1n;
  private readonly bits = new Uint32Array(Number(REPLAY_WINDOW) / 32);

  private static slot(ctr: bigint): number {
    return Number(ctr & (REPLAY_WINDOW - 1n));
  }

  /** Throws `replayed` or `too_old` for a CTR that must not be opened. */
  check(ctr: bigint): void {
    if (this.highest < 0n || ctr > this.highest) return;
    if (this.highest - ctr >= REPLAY_WINDOW) throw new OpenError("too_old", "frame too old");
    const i = ReplayWindow.slot(ctr);
    if ((this.bits[i >>> 5]! & (1 << (i & 31))) !== 0) throw new OpenError("replayed", "replayed frame");
  }

  /** Record `ctr` as opened (after it authenticated). */
  set(ctr: bigint): void {
    if (this.highest >= 0n && ctr <= this.highest) {
      if (this.highest - ctr < REPLAY_WINDOW) this.mark(ReplayWindow.slot(ctr));
      return;
    }
    const advance = this.highest < 0n ? REPLAY_WINDOW : ctr - this.highest;
    if (advance >= REPLAY_WINDOW) {
      this.bits.fill(0);
    } else {
      // Forget the CTRs that fall out of the window: highest+1 ..= ctr share their slots.
      const first = ReplayWindow.slot(this.highest) + 1;
      for (let k = 0; k < Number(advance); k++) {
        const i = (first + k) & (Number(REPLAY_WINDOW) - 1);
        this.bits[i >>> 5]! &= ~(1 << (i & 31));
      }
    }
    this.highest = ctr;
    this.mark(ReplayWindow.slot(ctr));
  }

  private mark(i: number): void {
    this.bits[i >>> 5]! |= 1 << (i & 31);
  }
}

interface Sender {
  ctx: Promise<KeyContext>;
  /** The context once derived (skips an await per frame). */
  ready: KeyContext | null;
  window: ReplayWindow;
}

/**
 * Opens everyone else's frames: a key context and replay window per KID (at most
 * `maxSenders`, least recently used evicted), updated only after a frame authenticates.
 */
export class Opener {
  private readonly senders = new Map<bigint, Sender>();
  /** The sender looked up last: already the most recent in `senders`, so a run of frames
   * from one sender skips the map. */
  private lastKid = -1n;
  private lastSender: Sender | null = null;
  constructor(
    private readonly schedule: KeySchedule,
    private readonly epoch: bigint,
    private readonly maxSenders: number,
  ) {}

  private sender(kid: bigint): Sender {
    if (kid === this.lastKid && this.lastSender !== null) return this.lastSender;
    const held = this.senders.get(kid);
    if (held) {
      this.senders.delete(kid);
      this.senders.set(kid, held);
      this.lastKid = kid;
      this.lastSender = held;
      return held;
    }
    const bits = kidEpochBits(kid);
    let epoch: bigint;
    if (bits === (this.epoch & EPOCH_MASK)) epoch = this.epoch;
    else if (bits === ((this.epoch + 1n) & EPOCH_MASK)) epoch = this.epoch + 1n;
    else throw new OpenError("unknown_kid", `unknown sframe kid 0x${kid.toString(16)}`);
    const sender: Sender = { ctx: this.schedule.keyContext(epoch, kid), ready: null, window: new ReplayWindow() };
    sender.ctx.then(
      (ctx) => (sender.ready = ctx),
      () => {},
    );
    this.senders.set(kid, sender);
    while (this.senders.size > this.maxSenders) {
      const oldest = this.senders.keys().next().value as bigint;
      this.senders.delete(oldest);
    }
    this.lastKid = kid;
    this.lastSender = sender;
    return sender;
  }

  /** The plaintext of an SFrame ciphertext, authenticating `metadata`; throws {@link OpenError}. */
  async open(metadata: Uint8Array, sframe: Uint8Array): Promise<Uint8Array> {
    let header;
    let headerLen;
    try {
      [header, headerLen] = decodeHeader(sframe);
    } catch {
      throw new OpenError("malformed", "malformed sframe");
    }
    const sender = this.sender(header.kid);
    sender.window.check(header.ctr);
    const ctx = sender.ready ?? (await sender.ctx);
    const plaintext = await ctx.open(header, headerLen, sframe, metadata);
    // Checked again: another frame with this CTR may have opened meanwhile.
    sender.window.check(header.ctr);
    sender.window.set(header.ctr);
    return plaintext;
  }
}
