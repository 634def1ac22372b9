// The demo page: joins the room with a ticket and the room secret from the demo server,
// encodes a canvas animation with VideoEncoder (VP8) and a computed oscillator with
// AudioEncoder (Opus), seals and sends every frame with the sealroom client, and opens,
// decodes and renders everyone else's. `window.sealroomDemo` holds what it measured.
import { Room, JoinError, fromHex } from "/client/index.js";

const WIDTH = 320;
const HEIGHT = 240;
const FPS = 15;
const KEYFRAME_EVERY = 30;
const SAMPLE_RATE = 48000;
const AUDIO_FRAME = 960; // 20 ms

const params = new URLSearchParams(location.search);
const state = (window.sealroomDemo = {
  joined: false,
  member: 0,
  error: null,
  events: [],
  sent: { audio: 0, video: 0, data: 0 },
  members: {},
  chat: [],
  couldNotOpen: 0,
});
const $ = (id) => document.getElementById(id);

function status(text, bad = false) {
  $("status").textContent = text;
  $("status").className = bad ? "bad" : "";
}

function log(line) {
  const el = $("log");
  el.textContent += line + "\n";
  el.scrollTop = el.scrollHeight;
}

function memberState(id) {
  if (!state.members[id]) {
    state.members[id] = {
      user: "", opened: 0, failures: 0, bytes: 0, window: [], latencies: [],
      video: { fed: 0, frames: 0, width: 0, height: 0, errors: 0 }, audio: { frames: 0, errors: 0 }, chat: 0,
    };
  }
  return state.members[id];
}

function tile(id) {
  let el = document.getElementById(`m${id}`);
  if (el) return el;
  el = document.createElement("div");
  el.className = "tile";
  el.id = `m${id}`;
  el.innerHTML = `<h2></h2><canvas width="${WIDTH}" height="${HEIGHT}"></canvas><table>
    <tr><td>frames opened</td><td class="n opened">0</td></tr>
    <tr><td>could not open</td><td class="n failures">0</td></tr>
    <tr><td>bitrate</td><td class="n rate">0 kbit/s</td></tr>
    <tr><td>latency p50</td><td class="n lat">–</td></tr>
    <tr><td>video decoded</td><td class="n vid">0</td></tr></table>`;
  $("tiles").append(el);
  return el;
}

function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function render() {
  const now = performance.now();
  for (const [id, m] of Object.entries(state.members)) {
    m.window = m.window.filter(([t]) => now - t < 1000);
    const el = tile(id);
    el.querySelector("h2").textContent = `${m.user || "member"} #${id}`;
    el.querySelector(".opened").textContent = m.opened;
    el.querySelector(".failures").textContent = m.failures;
    el.querySelector(".rate").textContent = `${Math.round(m.window.reduce((s, [, b]) => s + b, 0) * 8 / 1000)} kbit/s`;
    const p50 = percentile(m.latencies, 50);
    el.querySelector(".lat").textContent = p50 === null ? "–" : `${p50.toFixed(1)} ms`;
    el.querySelector(".vid").textContent = `${m.video.frames} (${m.video.width}×${m.video.height})`;
  }
  $("sent").textContent = state.sent.audio + state.sent.video + state.sent.data;
  requestAnimationFrame(render);
}

// Receivers: a VP8 and an Opus decoder per member.
const decoders = new Map();
function decodersOf(id) {
  if (decoders.has(id)) return decoders.get(id);
  const m = memberState(id);
  const canvas = tile(id).querySelector("canvas");
  const ctx = canvas.getContext("2d");
  const video = new VideoDecoder({
    output: (frame) => {
      m.video.frames++;
      m.video.width = frame.displayWidth;
      m.video.height = frame.displayHeight;
      ctx.drawImage(frame, 0, 0, canvas.width, canvas.height);
      frame.close();
    },
    error: () => {
      m.video.errors++;
      // A closed decoder decodes nothing more: start anew at the next keyframe.
      decoders.delete(id);
    },
  });
  video.configure({ codec: "vp8" });
  const audio = new AudioDecoder({
    output: (data) => {
      m.audio.frames++;
      data.close();
    },
    error: () => m.audio.errors++,
  });
  audio.configure({ codec: "opus", sampleRate: SAMPLE_RATE, numberOfChannels: 1 });
  const d = { video, audio, sawKey: false };
  decoders.set(id, d);
  return d;
}

function onFrame(f) {
  const m = memberState(f.member);
  m.opened++;
  m.bytes += f.payload.length;
  m.window.push([performance.now(), f.payload.length]);
  const latency = performance.timeOrigin + performance.now() - Number(f.envelope.timestampUs) / 1000;
  m.latencies.push(latency);
  if (m.latencies.length > 2000) m.latencies.shift();
  if (f.kind === "data") {
    const text = new TextDecoder().decode(f.payload);
    m.chat++;
    state.chat.push({ member: f.member, text });
    log(`${m.user || "#" + f.member}: ${text}`);
    return;
  }
  const d = decodersOf(f.member);
  const timestamp = Number(f.envelope.timestampUs);
  try {
    if (f.kind === "video") {
      const key = (f.envelope.flags & 1) !== 0;
      if (!d.sawKey && !key) return;
      d.sawKey = true;
      m.video.fed++;
      d.video.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp, data: f.payload }));
    } else if (f.kind === "audio") {
      d.audio.decode(new EncodedAudioChunk({ type: "key", timestamp, data: f.payload }));
    }
  } catch {
    if (f.kind === "video") m.video.errors++;
    else m.audio.errors++;
  }
}

async function startMedia(room) {
  const [video, audio, chat] = await Promise.all([room.publishVideo(), room.publishAudio(), room.publishData()]);
  state.tracks = { video: video.id, audio: audio.id, chat: chat.id };

  // Video: a canvas animation, VP8.
  const canvas = $("local");
  const ctx = canvas.getContext("2d");
  const encoder = new VideoEncoder({
    output: (chunk) => {
      const data = new Uint8Array(chunk.byteLength);
      chunk.copyTo(data);
      video.send(data, { keyframe: chunk.type === "key" }).then(() => state.sent.video++, () => {});
    },
    error: (e) => (state.error = `video encoder: ${e.message}`),
  });
  encoder.configure({ codec: "vp8", width: WIDTH, height: HEIGHT, bitrate: 300_000, framerate: FPS });
  let n = 0;
  setInterval(() => {
    const t = n / FPS;
    ctx.fillStyle = `hsl(${(n * 4) % 360} 60% 25%)`;
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(WIDTH / 2 + 100 * Math.cos(t), HEIGHT / 2 + 70 * Math.sin(2 * t), 24, 0, 2 * Math.PI);
    ctx.fill();
    ctx.font = "16px monospace";
    ctx.fillText(`member ${state.member}  frame ${n}`, 10, 22);
    const frame = new VideoFrame(canvas, { timestamp: Math.round(n * 1e6 / FPS) });
    const key = n % KEYFRAME_EVERY === 0 || state.wantKeyframe;
    if (encoder.encodeQueueSize < 4) {
      encoder.encode(frame, { keyFrame: key });
      if (key) state.wantKeyframe = false;
    }
    frame.close();
    n++;
  }, 1000 / FPS);

  // Audio: a computed 440 Hz oscillator, Opus in 20 ms frames.
  const audioEncoder = new AudioEncoder({
    output: (chunk) => {
      const data = new Uint8Array(chunk.byteLength);
      chunk.copyTo(data);
      audio.send(data).then(() => state.sent.audio++, () => {});
    },
    error: (e) => (state.error = `audio encoder: ${e.message}`),
  });
  audioEncoder.configure({ codec: "opus", sampleRate: SAMPLE_RATE, numberOfChannels: 1, bitrate: 32_000 });
  let sample = 0;
  setInterval(() => {
    const pcm = new Float32Array(AUDIO_FRAME);
    for (let i = 0; i < AUDIO_FRAME; i++) pcm[i] = 0.2 * Math.sin((2 * Math.PI * 440 * (sample + i)) / SAMPLE_RATE);
    const data = new AudioData({
      format: "f32", sampleRate: SAMPLE_RATE, numberOfFrames: AUDIO_FRAME, numberOfChannels: 1,
      timestamp: Math.round((sample * 1e6) / SAMPLE_RATE), data: pcm,
    });
    audioEncoder.encode(data);
    data.close();
    sample += AUDIO_FRAME;
  }, 20);

  // Chat: every message carries the plaintext marker the relay's tap must never see.
  const say = (text) => chat.send(`${text} ${state.marker}`).then(() => state.sent.data++);
  state.say = say;
  $("say").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (text) void say(text);
    log(`you: ${text}`);
    $("text").value = "";
  });
}

async function main() {
  const query = new URLSearchParams();
  for (const key of ["user", "ticket", "secret"]) if (params.get(key)) query.set(key, params.get(key));
  const config = await (await fetch(`/join?${query}`)).json();
  state.marker = config.marker;
  state.user = config.user;
  let room;
  try {
    room = await Room.join({
      url: config.url,
      ticket: config.ticket,
      roomSecret: fromHex(config.roomSecret),
      serverCertificateHashes: [fromHex(config.certSha256)],
      clientName: "sealroom-demo-page",
      // Before each reconnect: a fresh ticket and the relay's current certificate hash.
      refresh: async () => {
        query.set("user", config.user);
        const fresh = await (await fetch(`/join?${query}`)).json();
        return { url: fresh.url, ticket: fresh.ticket, serverCertificateHashes: [fromHex(fresh.certSha256)] };
      },
    });
  } catch (err) {
    state.error = err instanceof JoinError ? err.kind : String(err);
    status(`refused: ${state.error}${err.message ? ` (${err.message})` : ""}`, true);
    return;
  }
  state.room = room;
  state.joined = true;
  state.member = room.member;
  $("me").textContent = room.member;
  status(`in the room as ${config.user} (member ${room.member}); the relay forwards what it cannot open`);
  for (const [id, info] of room.roster) memberState(id).user = info.user;
  room.on("member-joined", (m) => {
    memberState(m.member).user = m.user;
    log(`${m.user} joined`);
  });
  room.on("member-left", (m) => {
    log(`${state.members[m.member]?.user ?? m.member} left (${m.reason})`);
    document.getElementById(`m${m.member}`)?.remove();
    decoders.get(m.member)?.video.close();
    decoders.delete(m.member);
  });
  room.on("frame", onFrame);
  room.on("could-not-open", (e) => {
    memberState(e.member).failures++;
    state.couldNotOpen++;
  });
  room.on("disconnected", (e) => {
    state.events.push(`disconnected ${e.code ?? e.reason}`);
    status(`connection lost (${e.code ?? e.reason})${e.willReconnect ? ", reconnecting…" : ""}`, true);
  });
  // Others need a keyframe to decode this page's video: after a reconnect, and when asked.
  room.on("keyframe-request", () => (state.wantKeyframe = true));
  room.on("reconnected", (e) => {
    state.wantKeyframe = true;
    state.events.push("reconnected");
    state.member = e.member;
    status(`back in the room (member ${e.member})`);
  });
  room.on("closed", (e) => {
    state.events.push(`closed ${e.code ?? e.reason}`);
    status(`left the room: ${e.code ?? e.reason}`, true);
  });
  await startMedia(room);
  requestAnimationFrame(render);
}

main().catch((err) => {
  state.error = String(err);
  status(`error: ${err}`, true);
});
