// An in-memory relay speaking the sealroom wire protocol over fake WebTransport sessions,
// so the room client can be tested under Node (which has no WebTransport). It forwards
// bytes as the real relay does: never opening a payload.
import { type ControlMessage, closeCode, decodeControl, encodeControlFramed } from "../src/control.js";
import { type Envelope, decodeFrame } from "../src/envelope.js";
import type { TransportLike } from "../src/client.js";
import { Deframer, MEDIA_STREAM_TYPE, frameBytes } from "../src/stream.js";

type Close = { closeCode?: number; reason?: string };

class Session implements TransportLike {
  member = 0;
  user = "";
  readonly ready = Promise.resolve();
  readonly closed: Promise<Close>;
  private resolveClosed!: (c: Close) => void;
  private rejectClosed!: (err: Error) => void;
  private toClientControl!: ReadableStreamDefaultController<Uint8Array>;
  private toClientDatagrams!: ReadableStreamDefaultController<Uint8Array>;
  private toClientStreams!: ReadableStreamDefaultController<ReadableStream<Uint8Array>>;
  isClosed = false;
  readonly datagrams: TransportLike["datagrams"];
  readonly incomingUnidirectionalStreams: ReadableStream<ReadableStream<Uint8Array>>;

  constructor(private readonly relay: FakeRelay) {
    this.closed = new Promise((resolve, reject) => {
      this.resolveClosed = resolve;
      this.rejectClosed = reject;
    });
    this.closed.catch(() => undefined);
    this.datagrams = {
      readable: new ReadableStream({ start: (c) => void (this.toClientDatagrams = c) }),
      writable: new WritableStream({ write: (bytes) => this.relay.frame(this, bytes, "datagram") }),
      maxDatagramSize: 1100,
    };
    this.incomingUnidirectionalStreams = new ReadableStream({ start: (c) => void (this.toClientStreams = c) });
  }

  async createBidirectionalStream() {
    const deframer = new Deframer(64 * 1024);
    return {
      readable: new ReadableStream<Uint8Array>({ start: (c) => void (this.toClientControl = c) }),
      writable: new WritableStream<Uint8Array>({
        write: (chunk) => {
          deframer.push(chunk.slice());
          for (let m = deframer.next(); m !== null; m = deframer.next()) this.relay.control(this, decodeControl(m));
        },
      }),
    };
  }

  async createUnidirectionalStream() {
    const deframer = new Deframer(1 << 20);
    let typed = false;
    return new WritableStream<Uint8Array>({
      write: (chunk) => {
        let bytes = chunk.slice();
        if (!typed) {
          if (bytes[0] !== MEDIA_STREAM_TYPE) throw new Error("not a media stream");
          typed = true;
          bytes = bytes.subarray(1);
        }
        deframer.push(bytes);
        for (let f = deframer.next(); f !== null; f = deframer.next()) this.relay.frame(this, f.slice(), "stream");
      },
    });
  }

  /** The connection closed with no WebTransport close capsule: `closed` rejects, with no
   * code, as in a browser. */
  abort(reason: string): void {
    this.close({}, new Error(reason));
  }

  close(info: Close = {}, abort?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const c of [this.toClientControl, this.toClientDatagrams, this.toClientStreams, ...this.lanes.values()]) {
      try {
        c?.close();
      } catch {
        // closed already
      }
    }
    if (abort) this.rejectClosed(abort);
    else this.resolveClosed(info);
    this.relay.gone(this);
  }

  send(message: ControlMessage): void {
    if (!this.isClosed) this.toClientControl.enqueue(encodeControlFramed(message));
  }

  /** The streams towards this client that carry more than one frame, as the relay keeps
   * them: one per (sender, track) for reliable data, one per (sender, track, group) for
   * video. Frames on one stream arrive in order; frames on different streams need not. */
  private readonly lanes = new Map<string, ReadableStreamDefaultController<Uint8Array>>();

  deliver(frame: Uint8Array, envelope: Envelope, path: "datagram" | "stream"): void {
    if (this.isClosed) return;
    if (path === "datagram") {
      this.toClientDatagrams.enqueue(frame);
      return;
    }
    const key =
      envelope.kind === "audio"
        ? null
        : `${envelope.sender}/${envelope.track}/${envelope.kind === "video" ? envelope.group : ""}`;
    const lane = key === null ? undefined : this.lanes.get(key);
    if (lane) {
      lane.enqueue(frameBytes(frame));
      return;
    }
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    this.toClientStreams.enqueue(new ReadableStream({ start: (c) => void (controller = c) }));
    controller.enqueue(Uint8Array.of(MEDIA_STREAM_TYPE, ...frameBytes(frame)));
    if (key === null) controller.close();
    else this.lanes.set(key, controller);
  }
}

/** Tickets are `ok:<user>`; `expired` and anything else are refused as the relay would. */
export class FakeRelay {
  readonly sessions = new Set<Session>();
  /** Every frame the relay saw, as received (the payload tap). */
  readonly tapped: Uint8Array[] = [];
  private nextMember = 1;
  up = true;
  /** Refusals close the session before their error reaches the page (as a browser may drop
   * a stream's unread bytes when its session closes). */
  dropRefusalText = false;

  readonly factory = (): TransportLike => {
    if (!this.up) {
      const dead = new Session(this);
      Object.defineProperty(dead, "ready", { value: Promise.reject(new Error("connection refused")) });
      (dead.ready as Promise<void>).catch(() => undefined);
      return dead;
    }
    const s = new Session(this);
    this.sessions.add(s);
    return s;
  };

  /** When set, every join is answered `redirect` to this `host:port`, as a loaded node of
   * a cluster does. */
  redirectTo: string | null = null;

  control(s: Session, m: ControlMessage): void {
    if (m.type === "join" && this.redirectTo !== null) {
      s.send({ type: "redirect", address: this.redirectTo });
      s.close({ closeCode: 0 });
      return;
    }
    if (m.type === "join") {
      if (m.ticket === "expired") {
        if (!this.dropRefusalText) s.send({ type: "error", code: "expired", message: "ticket expired" });
        s.close({ closeCode: closeCode("expired"), reason: "expired" });
        return;
      }
      if (!m.ticket.startsWith("ok:")) {
        if (!this.dropRefusalText) s.send({ type: "error", code: "bad_signature", message: "bad signature" });
        s.close({ closeCode: closeCode("bad_signature"), reason: "bad_signature" });
        return;
      }
      s.member = this.nextMember++;
      s.user = m.ticket.slice(3);
      const others = [...this.sessions].filter((o) => o !== s && o.member !== 0);
      s.send({
        type: "joined",
        member: s.member,
        roster: others.map((o) => ({ member: o.member, user: o.user, tracks: [] })),
        limits: { maxFrameLen: 262144, dataMessagesPerSec: 30, dataBytesPerSec: 16384, ticketExpiresInSecs: 600n },
      });
      for (const o of others) o.send({ type: "member_joined", info: { member: s.member, user: s.user, tracks: [] } });
    } else if (m.type === "leave") {
      s.close({ closeCode: 0 });
    }
  }

  frame(s: Session, bytes: Uint8Array, path: "datagram" | "stream"): void {
    this.tapped.push(bytes);
    const frame = decodeFrame(bytes);
    if (frame.envelope.sender !== s.member) return;
    for (const o of this.sessions) if (o !== s && o.member !== 0) o.deliver(bytes, frame.envelope, path);
  }

  gone(s: Session): void {
    if (!this.sessions.delete(s) || s.member === 0) return;
    for (const o of this.sessions) o.send({ type: "member_left", member: s.member, reason: "left" });
  }

  /** Close every session as a relay shutting down does: `Error{shutting_down}` on the
   * control stream, then the connection's close, with no close capsule (the relay's way
   * with browsers), or with the code in a capsule. */
  restart(how: "connection" | "capsule" = "connection"): void {
    for (const s of [...this.sessions]) {
      if (how === "capsule") {
        s.close({ closeCode: closeCode("shutting_down"), reason: "shutting_down" });
      } else {
        s.send({ type: "error", code: "shutting_down", message: "the relay is shutting down" });
        s.abort("WebTransportError: the connection was closed");
      }
    }
  }
}
