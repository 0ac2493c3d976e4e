// legato.js: the JavaScript client of legato's WebSocket protocol v1 (docs/protocol.md), for
// the browser page and any other page or program with a standard WebSocket (Node 20 with
// --experimental-websocket, Node 22+). No DOM, no dependencies.
//
//   const conn = await Connection.open("ws://127.0.0.1:8765/");
//   const live = await startPractice(conn, { sampleRate: 48000 });   // live analysis
//   live.onEvents((events) => ...); live.sendAudio(float32Block); const summary = await live.end();
//   A live session resumes by itself when its connection drops (docs/protocol.md, Resume):
//   no event is lost or repeated, and the audio the server lacks is sent again.
//
//   const play = await startPlayback(conn, { track: "album/song.flac" });  // mastered playback
//   play.onAudio((pcm, frame) => { ...; play.played(pcm.length / play.channels); });  // starts it

export const PROTOCOL_VERSION = 1;

/** A refusal or failure reported by the server (`code` is the protocol's error code). */
export class LegatoError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** One WebSocket connection to `legato serve`, open once its `hello` has arrived. A `token`
 * (for a server with auth on) goes in the URL's `token` query parameter: browsers cannot set
 * headers on a WebSocket. */
export class Connection {
  /** `session`: the id of a session this connection is to resume, added to the URL so that a
   * load balancer in front of several servers sends it to the one holding the session. */
  static open(url, { token, session } = {}) {
    return new Promise((resolve, reject) => {
      let ws;
      const target = url;
      try {
        const withQuery = new URL(url);
        if (token) withQuery.searchParams.set("token", token);
        if (session) withQuery.searchParams.set("session", session);
        ws = new WebSocket(withQuery.toString());
      } catch (err) {
        reject(new LegatoError("connection_failed", `${url}: ${err.message}`));
        return;
      }
      const conn = new Connection(ws);
      conn.url = target;
      conn.token = token;
      conn.next("hello").then((hello) => {
        if (hello.protocol !== PROTOCOL_VERSION) {
          ws.close();
          reject(new LegatoError("protocol_mismatch", `server speaks v${hello.protocol}`));
          return;
        }
        conn.hello = hello;
        resolve(conn);
      }, reject);
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.url = null;
    this.token = undefined;
    this.ws.binaryType = "arraybuffer";
    this.hello = null;
    this.closed = null; // {code, reason} once closed
    this.handlers = new Map(); // message type -> [fn]
    this.waiting = []; // {type, resolve, reject}
    ws.onmessage = (msg) => this._dispatch(msg.data);
    ws.onclose = (ev) => this._closed(ev.code, ev.reason);
    ws.onerror = () => {}; // a close follows, with its code
  }

  /** Call `fn(message)` for every message of `type` ("binary": ArrayBuffer PCM). */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
  }

  /** The next message of `type`; rejects on an `error` that ends the session or a close. */
  next(type) {
    return new Promise((resolve, reject) => this.waiting.push({ type, resolve, reject }));
  }

  send(message) {
    this.ws.send(JSON.stringify(message));
  }

  close() {
    this.ws.close(1000);
  }

  _dispatch(data) {
    if (typeof data !== "string") {
      this._emit("binary", data);
      return;
    }
    const message = JSON.parse(data);
    const kind = message.type;
    this._emit(kind, message);
    const refused = kind === "error";
    const still = [];
    for (const w of this.waiting) {
      if (w.type === kind) w.resolve(message);
      else if (refused && (!message.continues || w.type === "started")) {
        w.reject(new LegatoError(message.code, message.message));
      } else still.push(w);
    }
    this.waiting = still;
  }

  _emit(kind, message) {
    for (const fn of this.handlers.get(kind) || []) fn(message);
  }

  _closed(code, reason) {
    this.closed = { code, reason };
    this._emit("close", this.closed);
    for (const w of this.waiting) {
      w.reject(new LegatoError("connection_closed", `connection closed (${code} ${reason})`));
    }
    this.waiting = [];
  }
}

/** Start a live session: send audio, receive its events (`onEvents`), `end` for the summary. */
export async function startPractice(conn, options) {
  const start = {
    type: "start",
    pipeline: options.pipeline || "analyze",
    sample_rate: options.sampleRate,
    channels: options.channels || 1,
    format: "f32le",
  };
  for (const [key, field] of [["user", "user"], ["piece", "piece"], ["targetTempo", "target_tempo"]]) {
    if (options[key] !== undefined && options[key] !== "") start[field] = options[key];
  }
  const session = new PracticeSession(conn, start.channels); // listening before anything arrives
  const started = conn.next("started");
  conn.send(start);
  session.started = await started;
  return session;
}

/** Closes after which resuming cannot help: going away, policy, too big, resume failed,
 * unauthorized. */
const FATAL_CLOSES = [1001, 1008, 1009, 4002, 4003];
const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 2000;
const RESEND_BUFFER_S = 30;

export class PracticeSession {
  constructor(conn, channels = 1) {
    this.started = null; // the server's `started` message
    this.events = [];
    this.notices = [];
    this.listeners = [];
    this.resumes = 0; // how many times the session was resumed after a drop
    this.channels = channels;
    this.sessionId = conn.hello.session_id;
    this.resumeToken = conn.hello.resume_token;
    this.lastSeq = 0;
    this.held = []; // [first sample, Float32Array] sent and maybe needed again, contiguous
    this.total = 0; // samples (per channel) handed to sendAudio
    this.wire = 0; // samples written on the current connection
    this.ending = false;
    this.summary = null;
    this.failure = null;
    this.waiters = []; // {resolve, reject} of end()
    this.conn = conn;
    this._listen(conn);
    conn.on("close", (closed) => this._dropped(conn, closed));
  }

  /** `fn(events)` for each batch of events, as they arrive (each event once, in seq order). */
  onEvents(fn) {
    this.listeners.push(fn);
  }

  /** Send interleaved float32 samples (any number of whole frames). Kept until the server
   * has them for good, so that a resume can send them again. */
  sendAudio(samples) {
    const block = samples instanceof Float32Array ? samples : Float32Array.from(samples);
    const copy = block.slice();
    this.held.push([this.total, copy]);
    this.total += copy.length / this.channels;
    const limit = RESEND_BUFFER_S * (this.started ? this.started.sample_rate : 48000);
    while (this.held.length > 1 && this.total - this.held[1][0] > limit) this.held.shift();
    if (this.conn) this._write();
  }

  /** No more audio: the remaining events arrive, then the summary (returned). */
  end() {
    this.ending = true;
    const summary = new Promise((resolve, reject) => {
      if (this.summary) resolve(this.summary);
      else if (this.failure) reject(this.failure);
      else this.waiters.push({ resolve, reject });
    });
    if (this.conn) this.conn.send({ type: "end" });
    return summary;
  }

  get migratable() {
    return Boolean(this.started && this.started.migratable);
  }

  /** Take `conn`'s messages. Events are taken by seq, once, whichever connection carries
   * them: a resuming connection's are taken from its first message on (a WebSocket may
   * deliver several messages in one go, before the `resumed` reply has been acted on). */
  _listen(conn) {
    conn.on("analysis", (m) => {
      if (!this.migratable) this._acknowledge(m.through);
      const fresh = m.events.filter((e) => e.seq > this.lastSeq);
      if (!fresh.length) return;
      this.lastSeq = fresh[fresh.length - 1].seq;
      this.events.push(...fresh);
      for (const fn of this.listeners) fn(fresh);
    });
    conn.on("checkpoint", (m) => {
      if (this.migratable) this._acknowledge(m.samples);
    });
    conn.on("error", (m) => this.notices.push(m));
    conn.on("summary", (m) => {
      this.summary = m;
      for (const w of this.waiters) w.resolve(m);
      this.waiters = [];
    });
  }

  /** The server holds the first `samples` samples: stop keeping them. */
  _acknowledge(samples) {
    while (this.held.length) {
      const [first, block] = this.held[0];
      if (first + block.length / this.channels > samples) return;
      this.held.shift();
    }
  }

  /** Write what the current connection has not carried yet. */
  _write() {
    for (const [first, block] of this.held) {
      const frames = block.length / this.channels;
      if (first + frames <= this.wire) continue;
      const from = Math.max(0, this.wire - first) * this.channels;
      const part = block.subarray(from);
      this.conn.ws.send(part.buffer.slice(part.byteOffset, part.byteOffset + part.byteLength));
      this.wire = first + frames;
    }
  }

  _fail(error) {
    this.failure = error;
    for (const w of this.waiters) w.reject(error);
    this.waiters = [];
  }

  async _dropped(conn, closed) {
    if (conn !== this.conn || this.summary) return;
    this.conn = null;
    if (FATAL_CLOSES.includes(closed.code)) {
      this._fail(new LegatoError("connection_lost", `session closed (${closed.code} ${closed.reason})`));
      return;
    }
    const graceMs = 1000 * conn.hello.limits.resume_grace_s;
    const droppedAt = Date.now();
    let delay = FIRST_BACKOFF_MS;
    while (Date.now() - droppedAt < graceMs) {
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(2 * delay, MAX_BACKOFF_MS);
      try {
        await this._resume(conn.url, conn.token);
        return;
      } catch (err) {
        if (err instanceof LegatoError && err.code === "resume_failed") {
          this._fail(err);
          return;
        }
      }
    }
    this._fail(new LegatoError("connection_lost", `connection lost and not resumed in ${graceMs / 1000} s`));
  }

  async _resume(url, token) {
    const conn = await Connection.open(url, { token, session: this.sessionId });
    const resume = { type: "resume", session_id: this.sessionId, token: this.resumeToken, last_seq: this.lastSeq };
    if (token) resume.access_token = token;
    this._listen(conn);
    const resumed = conn.next("resumed");
    conn.send(resume);
    let reply;
    try {
      reply = await resumed;
    } catch (err) {
      conn.ws.close();
      throw err;
    }
    const floor = this.held.length ? this.held[0][0] : this.total;
    if (reply.samples_received < floor) {
      conn.close();
      throw new LegatoError("resume_failed", `the server needs audio from sample ${reply.samples_received}, held from ${floor}`);
    }
    if (!this.migratable) this._acknowledge(reply.samples_received);
    this.wire = Math.min(reply.samples_received, this.total);
    this.resumes += 1;
    this.conn = conn;
    conn.on("close", (closed) => this._dropped(conn, closed));
    this._write();
    if (this.ending) conn.send({ type: "end" });
  }
}

/** Start mastered playback of a library track: PCM arrives through `onAudio` no faster than
 * the player reports it `played` (credit); `seek` moves the position. */
export async function startPlayback(conn, options) {
  const start = {
    type: "start",
    pipeline: options.pipeline || "playback",
    track: options.track,
    format: "f32le",
  };
  // Listening before anything can arrive: a client may get several messages in one task.
  const playback = new Playback(conn);
  const started = conn.next("started");
  const track = conn.next("track");
  track.catch(() => {}); // a refused start rejects `started`; `track` then never comes
  conn.send(start);
  await started;
  playback.begin(await track, options.bufferSeconds || 2.0);
  return playback;
}

export class Playback {
  constructor(conn) {
    this.conn = conn;
    this.track = null; // class, fingerprint tier, loudness before and expected after, ...
    this.position = 0; // the track frame the next PCM block starts at
    this.granted = 0;
    this.received = 0;
    this.ended = false;
    this.events = [];
    this.notices = [];
    this.seeking = 0; // seeks sent and not answered: PCM until then is stale
    this.audioListeners = [];
    this.endListeners = [];
    conn.on("binary", (data) => this._pcm(data));
    conn.on("seeked", (m) => {
      this.seeking -= 1;
      if (!this.seeking) this.position = m.frame;
    });
    conn.on("track_end", () => {
      if (this.seeking) return;
      this.ended = true;
      for (const fn of this.endListeners) fn();
    });
    conn.on("analysis", (m) => this.events.push(...m.events));
    conn.on("error", (m) => {
      if (m.code === "bad_seek" && this.seeking) this.seeking -= 1;
      this.notices.push(m);
    });
  }

  /** The server's `track` message is in; the first `onAudio` grants `bufferSeconds`. */
  begin(track, bufferSeconds) {
    this.track = track;
    this.channels = track.channels;
    this.sampleRate = track.sample_rate;
    this.bufferFrames = Math.max(1, Math.round(bufferSeconds * this.sampleRate));
  }

  /** `fn(samples, frame)`: interleaved float32 PCM starting at track frame `frame`. The
   * first listener starts the audio: the buffer's worth of frames is granted then. */
  onAudio(fn) {
    this.audioListeners.push(fn);
    if (this.audioListeners.length === 1) this.grant(this.bufferFrames);
  }

  /** `fn()` once the last frame of the track has arrived. */
  onEnd(fn) {
    this.endListeners.push(fn);
  }

  grant(frames) {
    if (frames > 0) {
      this.granted += frames;
      this.conn.send({ type: "credit", frames });
    }
  }

  /** The player is done with `frames` frames (played, or dropped): ask for as many more. */
  played(frames) {
    this.grant(frames);
  }

  seek(frame) {
    this.seeking += 1;
    this.ended = false;
    this.conn.send({ type: "seek", frame: Math.max(0, Math.round(frame)) });
  }

  async end() {
    const summary = this.conn.next("summary");
    this.conn.send({ type: "end" });
    return summary;
  }

  _pcm(data) {
    const samples = new Float32Array(data);
    const frames = samples.length / this.channels;
    this.received += frames;
    if (this.seeking) {
      this.grant(frames); // from before the seek: dropped, and asked for again
      return;
    }
    const frame = this.position;
    this.position += frames;
    for (const fn of this.audioListeners) fn(samples, frame);
  }
}
