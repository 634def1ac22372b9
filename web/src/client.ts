/**
 * The room client: join a room over WebTransport with a ticket and the room secret, publish
 * audio, video and data tracks, receive everyone else's frames opened in the page, and hear
 * what happens (members, frames that could not be opened, disconnects, reconnects).
 *
 * ```ts
 * const room = await Room.join({ url, ticket, roomSecret, serverCertificateHashes: [hash] });
 * room.on("frame", (f) => render(f.member, f.kind, f.payload));
 * room.on("could-not-open", (e) => console.warn(e.member, e.reason));
 * const chat = room.publishData();
 * await chat.send("hello");
 * ```
 *
 * The mapping onto WebTransport is the native one (docs/WEB.md): one bidirectional control
 * stream, audio in datagrams when it fits (else a stream per frame), a stream per video
 * group, a long-lived stream per reliable data track. Sealers live as long as the `Room`,
 * not the connection: a reconnect never restarts a counter under an old key.
 */

import {
  type ControlMessage,
  type ErrorCode,
  type LeaveReason,
  MAX_CONTROL_LEN,
  type MemberInfo,
  type SessionLimits,
  decodeControl,
  encodeControlFramed,
  errorCodeOfClose,
  mayRetry,
  sessionEnds,
} from "./control.js";
import {
  type Envelope,
  Flags,
  HEADER_LEN,
  METADATA_LEN,
  type MediaKind,
  decodeFrame,
  writeFrameHeader,
  writeMetadata,
} from "./envelope.js";
import { type OpenErrorKind, OpenError, SealroomError } from "./errors.js";
import { type Opener, KeySchedule, type Sealer } from "./schedule.js";
import { type CipherSuite, DEFAULT_SUITE } from "./sframe.js";
import { Deframer, MEDIA_STREAM_TYPE, frameBytes } from "./stream.js";

/** What the client needs of a WebTransport session (the browser's `WebTransport` fits). */
export interface TransportLike {
  readonly ready: Promise<unknown>;
  readonly closed: Promise<{ closeCode?: number; reason?: string }>;
  readonly datagrams: {
    readonly readable: ReadableStream<Uint8Array>;
    readonly writable: WritableStream<Uint8Array>;
    readonly maxDatagramSize?: number;
  };
  readonly incomingUnidirectionalStreams: ReadableStream<ReadableStream<Uint8Array>>;
  createBidirectionalStream(): Promise<{
    readable: ReadableStream<Uint8Array>;
    writable: WritableStream<Uint8Array>;
  }>;
  createUnidirectionalStream(options?: { sendOrder?: number }): Promise<WritableStream<Uint8Array>>;
  close(info?: { closeCode?: number; reason?: string }): void;
}

/** Opens a session to `url`; the default is the browser's `WebTransport`. */
export type TransportFactory = (
  url: string,
  options: { serverCertificateHashes?: { algorithm: "sha-256"; value: Uint8Array }[] },
) => TransportLike;

/** How to reconnect after a lost connection (as the Rust client: exponential backoff). */
export interface ReconnectOptions {
  /** First wait, in milliseconds (default 250). */
  initialDelayMs?: number;
  /** Longest wait (default 5000). */
  maxDelayMs?: number;
  /** Attempts before giving up (default 10; 0: never reconnect). */
  maxAttempts?: number;
}

export interface RoomOptions {
  /** `https://relay:port/sealroom`. */
  url: string;
  /** The ticket the app's backend minted for this user and room. */
  ticket: string;
  /** The room secret: 32 bytes the app gave its members. Never sent anywhere. */
  roomSecret: Uint8Array;
  /** SHA-256 hashes of the relay's certificate (development relays); none for a CA one. */
  serverCertificateHashes?: Uint8Array[];
  /** Shown in the relay's logs (default `sealroom-web`). */
  clientName?: string;
  /** The room the page means to enter; a ticket for another is refused (`wrong_room`). */
  room?: string;
  reconnect?: ReconnectOptions;
  /** The SFrame suite (every member of a room must use the same; default AES-128-GCM). */
  suite?: CipherSuite;
  /** Another way to open sessions (tests, other runtimes). */
  transport?: TransportFactory;
  /**
   * Called before each reconnect for what may have changed since the last connect: a fresh
   * ticket, the relay's new certificate hash (a development relay rotates it), another URL.
   * Like the Rust client's ticket source; without it the first values are used again.
   */
  refresh?: () => Promise<Partial<Pick<RoomOptions, "url" | "ticket" | "serverCertificateHashes">>>;
}

/** A frame from another member, opened. */
export interface ReceivedFrame {
  member: number;
  track: number;
  kind: MediaKind;
  envelope: Envelope;
  payload: Uint8Array;
}

/** What a room tells its listeners. */
export interface RoomEvents {
  frame: ReceivedFrame;
  "member-joined": MemberInfo;
  "member-left": { member: number; reason: LeaveReason };
  "track-published": { member: number; track: number; kind: MediaKind };
  "track-unpublished": { member: number; track: number };
  /** A frame that did not open: wrong room secret, altered, replayed. */
  "could-not-open": { member: number; track: number; reason: OpenErrorKind };
  /** A warning the relay sent that keeps the session (`rate_limited`, `frame_too_large`...). */
  warning: { code: ErrorCode; message: string };
  "keyframe-request": { member: number; track: number };
  /** The connection was lost; a reconnect follows unless `willReconnect` is false. */
  disconnected: { code?: ErrorCode; reason: string; willReconnect: boolean };
  reconnected: { member: number };
  /** The room session is over (left, refused, or gave up reconnecting). */
  closed: { code?: ErrorCode; reason: string };
}

/**
 * A join the relay refused, with its typed reason; `transport` when no relay could be
 * reached, `redirected` when the cluster sent the join on more than {@link MAX_REDIRECTS}
 * times in a row.
 */
export class JoinError extends SealroomError<ErrorCode | "transport" | "redirected"> {}

/** Redirects followed for one join, as the Rust client. */
export const MAX_REDIRECTS = 3;

/** `url` with its host and port replaced by a relay's `host:port` (a `Redirect`). */
function redirectedUrl(url: string, address: string): string {
  const next = new URL(url);
  next.host = address;
  return next.toString();
}

/** Per-member receive counters. */
export interface MemberStats {
  framesOpened: number;
  openFailures: number;
  bytesOpened: number;
  /** Capture to open, in milliseconds, of the last frame (sender's clock: same machine only). */
  lastLatencyMs: number | null;
}

type Listener<T> = (event: T) => void;

/** A published track: `send` seals and sends one frame. */
export class Track {
  private group = 0;
  private seq = 0;
  private stream: WritableStreamDefaultWriter<Uint8Array> | null = null;
  private chain: Promise<void> = Promise.resolve();
  private ended = false;
  private started = false;
  /** The envelope's metadata of the frame being sealed (the sealer copies it at once). */
  private readonly metadataBuf = new Uint8Array(HEADER_LEN);

  /** @internal */
  constructor(
    private readonly room: Room,
    readonly kind: MediaKind,
    readonly id: number,
    private readonly sealer: Sealer,
    private readonly reliable: boolean,
  ) {}

  /**
   * Seal and send one frame. Video: `keyframe` starts a new group (a new stream). Frames of
   * one track go out in the order `send` was called.
   */
  send(
    payload: Uint8Array | string,
    options: { keyframe?: boolean; timestampUs?: bigint; discardable?: boolean } = {},
  ): Promise<void> {
    const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    const result = this.chain.then(() => this.sendNow(bytes, options));
    this.chain = result.catch(() => undefined);
    return result;
  }

  private async sendNow(
    plaintext: Uint8Array,
    options: { keyframe?: boolean; timestampUs?: bigint; discardable?: boolean },
  ): Promise<void> {
    if (this.ended) throw new SealroomError("ended", "this track was unpublished");
    let flags = options.discardable ? Flags.DISCARDABLE : 0;
    if (this.kind === "video" && options.keyframe) {
      // A keyframe starts a group: a new stream, the previous one finished.
      if (this.stream !== null) await this.endGroup();
      if (this.started) this.group = (this.group + 1) >>> 0;
      this.seq = 0;
      flags |= Flags.GROUP_START;
    }
    this.started = true;
    if (this.kind === "data" && !this.reliable) flags |= Flags.UNRELIABLE;
    const envelope: Envelope = {
      kind: this.kind,
      flags,
      sender: this.room.member,
      track: this.id,
      group: this.group,
      seq: this.seq++,
      timestampUs: options.timestampUs ?? BigInt(Math.round(nowMs() * 1000)),
    };
    // Sealed behind room for the envelope, which is then written in front: one copy of the
    // ciphertext (out of WebCrypto's buffer) rather than two.
    const frame = await this.sealer.seal(writeMetadata(this.metadataBuf, envelope), plaintext, HEADER_LEN);
    writeFrameHeader(frame, envelope);
    const link = this.room.link;
    if (!link) return; // Disconnected: a real-time frame is worth nothing later.
    if (this.kind === "audio" || (this.kind === "data" && !this.reliable)) {
      if (frame.length <= link.maxDatagramSize()) return link.sendDatagram(frame);
      return link.sendOnNewStream(frame);
    }
    if (this.stream === null) this.stream = await link.openMediaStream(this.group);
    try {
      await this.stream.write(frameBytes(frame));
    } catch {
      this.stream = null;
    }
  }

  private async endGroup(): Promise<void> {
    const stream = this.stream;
    this.stream = null;
    await stream?.close().catch(() => undefined);
  }

  /**
   * @internal Leaving: every frame sent so far is on its way, and a reliable data track's
   * stream is finished, so the relay forwards its last messages before it reads `leave`.
   */
  async flush(): Promise<void> {
    await this.chain;
    if (this.kind === "data" && this.reliable) await this.endGroup();
  }

  /** @internal The connection changed: streams start anew on the next one. */
  reset(): void {
    this.stream = null;
  }

  /**
   * Stop publishing: the last group or data stream is finished. A reliable data track that
   * has a stream on this connection ends with it (the relay unpublishes the track after its
   * last message, docs/PROTOCOL.md); any other track is unpublished with a control message.
   */
  async unpublish(): Promise<void> {
    await this.chain;
    this.ended = true;
    const endsWithStream = this.kind === "data" && this.reliable && this.stream !== null;
    await this.endGroup();
    this.room.unpublished(this, !endsWithStream);
  }
}

function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Wait for `promise`, at most `ms` (the timer does not outlive the wait). */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  try {
    await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How long {@link Room.leave} waits for the tracks to finish sending and then for the relay
 * to close the session (as the Rust client's `leave_timeout`).
 */
export const LEAVE_TIMEOUT_MS = 2000;

/** One connection's session: the transport and its writers. @internal */
class Link {
  private readonly control: WritableStreamDefaultWriter<Uint8Array>;
  private readonly datagrams: WritableStreamDefaultWriter<Uint8Array>;
  private streamOrder = 0;
  /** Settles when the control stream has been read to its end. */
  controlRead: Promise<unknown> = Promise.resolve();
  /** The session-ending `Error` the relay sent on the control stream, if any. */
  ending: { code: ErrorCode; message: string } | null = null;

  constructor(
    readonly transport: TransportLike,
    control: WritableStream<Uint8Array>,
  ) {
    this.control = control.getWriter();
    this.datagrams = transport.datagrams.writable.getWriter();
  }

  maxDatagramSize(): number {
    return this.transport.datagrams.maxDatagramSize ?? 1024;
  }

  async sendControl(message: ControlMessage): Promise<void> {
    await this.control.write(encodeControlFramed(message));
  }

  async sendDatagram(frame: Uint8Array): Promise<void> {
    await this.datagrams.write(frame).catch(() => undefined);
  }

  /** A new media stream, its type byte written; newer video groups go first. */
  async openMediaStream(_group: number): Promise<WritableStreamDefaultWriter<Uint8Array>> {
    const stream = await this.transport.createUnidirectionalStream({ sendOrder: ++this.streamOrder });
    const writer = stream.getWriter();
    await writer.write(Uint8Array.of(MEDIA_STREAM_TYPE));
    return writer;
  }

  async sendOnNewStream(frame: Uint8Array): Promise<void> {
    const writer = await this.openMediaStream(0);
    await writer.write(frameBytes(frame));
    await writer.close();
  }

  close(code = 0, reason = ""): void {
    try {
      this.transport.close({ closeCode: code, reason });
    } catch {
      // Already closed.
    }
  }
}

/** A member's session in a room. Create it with {@link Room.join}. */
export class Room {
  /** The member id the relay gave this session (changes on reconnect). */
  member = 0;
  /** Everyone else in the room, by member id. */
  readonly roster = new Map<number, MemberInfo>();
  /** The limits the relay enforces on this session. */
  limits: SessionLimits | null = null;
  /** @internal */
  link: Link | null = null;

  private readonly listeners = new Map<keyof RoomEvents, Set<Listener<never>>>();
  private readonly tracks = new Set<Track>();
  private readonly stats = new Map<number, MemberStats>();
  private nextTrack = 1;
  private leaving = false;
  private opener: Opener;

  private readonly options: RoomOptions;
  /** The URL of the node the session is on (the app's, or where it was redirected). */
  url = "";

  private constructor(
    options: RoomOptions,
    private readonly schedule: KeySchedule,
  ) {
    this.options = { ...options };
    this.opener = schedule.opener(0n);
  }

  /**
   * Join the room the ticket names. Rejects with {@link JoinError} carrying the relay's
   * reason (`expired`, `bad_signature`, `room_full`, ...) or `transport` when the relay
   * could not be reached.
   */
  static async join(options: RoomOptions): Promise<Room> {
    const schedule = await KeySchedule.create(options.roomSecret, options.suite ?? DEFAULT_SUITE);
    const room = new Room(options, schedule);
    await room.connect();
    return room;
  }

  /** Listen for `type`; returns a function that stops listening. */
  on<K extends keyof RoomEvents>(type: K, listener: Listener<RoomEvents[K]>): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  private emit<K extends keyof RoomEvents>(type: K, event: RoomEvents[K]): void {
    for (const listener of this.listeners.get(type) ?? []) {
      try {
        (listener as Listener<RoomEvents[K]>)(event);
      } catch (err) {
        console.error(`a "${type}" listener threw`, err);
      }
    }
  }

  /** Publish an audio track (datagrams; a frame too large for one goes on a stream). */
  publishAudio(): Promise<Track> {
    return this.publish("audio", true);
  }
  /** Publish a video track (a stream per group; `send(frame, { keyframe: true })` starts one). */
  publishVideo(): Promise<Track> {
    return this.publish("video", true);
  }
  /** Publish a data track: reliable and ordered (a stream), or unreliable (datagrams). */
  publishData(options: { reliable?: boolean } = {}): Promise<Track> {
    return this.publish("data", options.reliable ?? true);
  }

  private async publish(kind: MediaKind, reliable: boolean): Promise<Track> {
    const track = new Track(this, kind, this.nextTrack++, await this.schedule.sealer(0n), reliable);
    this.tracks.add(track);
    return track;
  }

  /** @internal */
  unpublished(track: Track, announce: boolean): void {
    this.tracks.delete(track);
    if (!announce) return;
    void this.link?.sendControl({ type: "track_unpublished", member: this.member, track: track.id }).catch(() => undefined);
  }

  /** Ask `member` for a keyframe of `track` (after a lost video group). */
  requestKeyframe(member: number, track: number): void {
    void this.link?.sendControl({ type: "keyframe_request", member, track }).catch(() => undefined);
  }

  /** Receive counters per member id. */
  memberStats(): Map<number, MemberStats> {
    return new Map([...this.stats].map(([k, v]) => [k, { ...v }]));
  }

  /**
   * Leave the room: the relay tells the others, nothing reconnects. Messages sent on
   * reliable data tracks before `leave` reach the others first (each track's stream is
   * finished before `leave` goes out, and the relay closes the session once it has read
   * them); the wait is bounded by {@link LEAVE_TIMEOUT_MS}.
   */
  async leave(): Promise<void> {
    this.leaving = true;
    const flushed = Promise.all([...this.tracks].map((track) => track.flush().catch(() => undefined)));
    await within(flushed, LEAVE_TIMEOUT_MS);
    const link = this.link;
    this.link = null;
    if (link) {
      await link.sendControl({ type: "leave" }).catch(() => undefined);
      const closed = link.transport.closed.then(
        () => undefined,
        () => undefined,
      );
      await within(closed, LEAVE_TIMEOUT_MS);
      link.close(0, "left");
    }
    this.emit("closed", { reason: "left" });
  }

  /**
   * Join at the room's URL, following the cluster's `Redirect`s to other nodes (the same
   * path on the node's `host:port`, with the same ticket and certificate hashes), at most
   * {@link MAX_REDIRECTS} in a row. Every connect (a reconnect too) starts at the URL the
   * app gave, so the cluster places the member again.
   */
  private async connect(): Promise<void> {
    let url = this.options.url;
    for (let hops = 0; ; hops++) {
      const to = await this.connectAt(url);
      if (to === null) {
        this.url = url;
        return;
      }
      if (hops >= MAX_REDIRECTS) {
        throw new JoinError("redirected", `the relay redirected the join to ${to}, after too many redirects; retry later`);
      }
      url = redirectedUrl(url, to);
    }
  }

  /** One connect and join at `url`: `null` once joined, or where the relay redirects to. */
  private async connectAt(url: string): Promise<string | null> {
    const factory =
      this.options.transport ??
      ((url, opts) => new (globalThis as unknown as { WebTransport: new (u: string, o: object) => TransportLike }).WebTransport(url, opts));
    const hashes = this.options.serverCertificateHashes?.map((value) => ({ algorithm: "sha-256" as const, value }));
    let transport: TransportLike;
    try {
      transport = factory(url, hashes ? { serverCertificateHashes: hashes } : {});
      await transport.ready;
    } catch (err) {
      throw new JoinError("transport", `could not reach the relay: ${String(err)}`);
    }
    const control = await transport.createBidirectionalStream();
    const link = new Link(transport, control.writable);
    const answer = new Promise<ControlMessage>((resolve, reject) => {
      const reading = this.readControl(control.readable, link, resolve);
      link.controlRead = reading.catch(() => undefined);
      void reading.then(
        async () => reject(await refusalOf(transport, "the relay closed the control stream")),
        reject,
      );
    });
    try {
      await link.sendControl({
        type: "join",
        ticket: this.options.ticket,
        clientName: this.options.clientName ?? "sealroom-web",
        clientVersion: "0.1.0",
        options: { autoSubscribe: true, room: this.options.room ?? null },
      });
    } catch (err) {
      throw await refusalOf(transport, `could not send the join: ${String(err)}`);
    }
    const first = await answer;
    if (first.type === "redirect") {
      link.close();
      return first.address;
    }
    if (first.type === "error") {
      link.close();
      throw new JoinError(first.code, first.message || `join refused: ${first.code}`);
    }
    if (first.type !== "joined") {
      link.close();
      throw new JoinError("protocol_violation", `expected joined, got ${first.type}`);
    }
    this.member = first.member;
    this.limits = first.limits;
    this.roster.clear();
    for (const info of first.roster) this.roster.set(info.member, info);
    for (const track of this.tracks) track.reset();
    this.link = link;
    void this.readDatagrams(transport);
    void this.readStreams(transport);
    void transport.closed.then(
      (info) => this.lost(link, info.closeCode ?? 0, info.reason ?? ""),
      (err) => this.lost(link, undefined, String(err)),
    );
    return null;
  }

  private async lost(link: Link, closeCode: number | undefined, reason: string): Promise<void> {
    if (this.link !== link || this.leaving) return;
    this.link = null;
    // The relay closes a browser's connection without the WebTransport close capsule
    // (docs/WEB.md), so the code comes from the control stream's `Error` that went first:
    // read what the control stream still holds before deciding.
    let code = closeCode === undefined ? undefined : errorCodeOfClose(closeCode);
    if (code === undefined) {
      await Promise.race([link.controlRead, sleep(CLOSE_CODE_WAIT_MS)]);
      code = link.ending?.code;
    }
    if (this.leaving) return;
    if (!reason && link.ending) reason = link.ending.message;
    const final = code !== undefined && sessionEnds(code) && !mayRetry(code);
    const attempts = final ? 0 : (this.options.reconnect?.maxAttempts ?? 10);
    this.emit("disconnected", { ...(code ? { code } : {}), reason, willReconnect: attempts > 0 });
    let delay = this.options.reconnect?.initialDelayMs ?? 250;
    const maxDelay = this.options.reconnect?.maxDelayMs ?? 5000;
    for (let attempt = 0; attempt < attempts && !this.leaving; attempt++) {
      await sleep(delay * (0.75 + Math.random() / 2));
      delay = Math.min(delay * 2, maxDelay);
      try {
        if (this.options.refresh) Object.assign(this.options, await this.options.refresh());
        await this.connect();
        this.emit("reconnected", { member: this.member });
        return;
      } catch (err) {
        if (
          err instanceof JoinError &&
          err.kind !== "transport" &&
          err.kind !== "redirected" &&
          !mayRetry(err.kind as ErrorCode)
        ) {
          this.emit("closed", { code: err.kind as ErrorCode, reason: err.message });
          return;
        }
      }
    }
    if (!this.leaving) this.emit("closed", { ...(code ? { code } : {}), reason: reason || "connection lost" });
  }

  private async readControl(
    readable: ReadableStream<Uint8Array>,
    link: Link,
    first: (m: ControlMessage) => void,
  ): Promise<void> {
    const deframer = new Deframer(MAX_CONTROL_LEN);
    const reader = readable.getReader();
    let answered = false;
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done || !value) return;
      deframer.push(value);
      for (let bytes = deframer.next(); bytes !== null; bytes = deframer.next()) {
        const message = decodeControl(bytes);
        if (!answered) {
          answered = true;
          first(message);
          continue;
        }
        // Kept even when the link is already lost: its close may have come first.
        if (message.type === "error" && sessionEnds(message.code)) link.ending = { code: message.code, message: message.message };
        if (this.link === link) this.handleControl(message);
      }
    }
  }

  private handleControl(m: ControlMessage): void {
    switch (m.type) {
      case "member_joined":
        this.roster.set(m.info.member, m.info);
        this.emit("member-joined", m.info);
        return;
      case "member_left":
        this.roster.delete(m.member);
        this.emit("member-left", { member: m.member, reason: m.reason });
        return;
      case "track_published":
        this.emit("track-published", { member: m.member, track: m.track.track, kind: m.track.kind });
        return;
      case "track_unpublished":
        this.emit("track-unpublished", { member: m.member, track: m.track });
        return;
      case "keyframe_request":
        this.emit("keyframe-request", { member: m.member, track: m.track });
        return;
      case "error":
        if (!sessionEnds(m.code)) this.emit("warning", { code: m.code, message: m.message });
        return;
      default:
        return;
    }
  }

  private async readDatagrams(transport: TransportLike): Promise<void> {
    const reader = transport.datagrams.readable.getReader();
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done || !value) return;
      void this.receive(value);
    }
  }

  private async readStreams(transport: TransportLike): Promise<void> {
    const reader = transport.incomingUnidirectionalStreams.getReader();
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done || !value) return;
      void this.readMediaStream(value);
    }
  }

  private async readMediaStream(stream: ReadableStream<Uint8Array>): Promise<void> {
    const reader = stream.getReader();
    const deframer = new Deframer(this.limits?.maxFrameLen ?? 256 * 1024);
    let typed = false;
    // Frames of one stream are opened in order.
    let chain = Promise.resolve();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !value) break;
        let chunk = value;
        if (!typed && chunk.length > 0) {
          if (chunk[0] !== MEDIA_STREAM_TYPE) throw new SealroomError("stream_type", "not a media stream");
          typed = true;
          chunk = chunk.subarray(1);
        }
        deframer.push(chunk);
        for (let bytes = deframer.next(); bytes !== null; bytes = deframer.next()) {
          const frame = bytes.slice();
          chain = chain.then(() => this.receive(frame));
        }
      }
    } catch {
      await reader.cancel().catch(() => undefined);
    }
    await chain;
  }

  private async receive(bytes: Uint8Array): Promise<void> {
    let frame;
    try {
      frame = decodeFrame(bytes);
    } catch {
      return;
    }
    const { envelope } = frame;
    let stats = this.stats.get(envelope.sender);
    if (!stats) {
      stats = { framesOpened: 0, openFailures: 0, bytesOpened: 0, lastLatencyMs: null };
      this.stats.set(envelope.sender, stats);
    }
    try {
      // The received header's first bytes are the metadata (the decoder checked each field).
      const payload = await this.opener.open(bytes.subarray(0, METADATA_LEN), frame.payload);
      stats.framesOpened++;
      stats.bytesOpened += payload.length;
      stats.lastLatencyMs = nowMs() - Number(envelope.timestampUs) / 1000;
      this.emit("frame", { member: envelope.sender, track: envelope.track, kind: envelope.kind, envelope, payload });
    } catch (err) {
      stats.openFailures++;
      const reason = err instanceof OpenError ? err.kind : "malformed";
      this.emit("could-not-open", { member: envelope.sender, track: envelope.track, reason });
    }
  }
}

/** How long a join whose control stream ended early waits for the session's close code. */
const CLOSE_CODE_WAIT_MS = 2000;

/**
 * Why a join ended before the relay's answer could be read. The relay sends its refusal on the
 * control stream and then closes the session with the refusal's code; a browser may drop the
 * stream's unread bytes when the session closes, so the close code is the refusal then.
 */
async function refusalOf(transport: TransportLike, fallback: string): Promise<JoinError> {
  const info = await Promise.race([
    transport.closed.then(
      (i) => i,
      () => undefined,
    ),
    sleep(CLOSE_CODE_WAIT_MS).then(() => undefined),
  ]);
  const code = info?.closeCode === undefined ? undefined : errorCodeOfClose(info.closeCode);
  if (code !== undefined) {
    return new JoinError(code, info?.reason ? info.reason : `join refused: ${code}`);
  }
  return new JoinError("transport", fallback);
}
