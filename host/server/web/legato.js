// legato.js: the JavaScript client of legato's WebSocket protocol v1 (docs/protocol.md), for
// the browser page and any other page or program with a standard WebSocket (Node 20 with
// --experimental-websocket, Node 22+). No DOM, no dependencies.
//
//   const conn = await Connection.open("ws://127.0.0.1:8765/");
//   const live = await startPractice(conn, { sampleRate: 48000 });   // live analysis
//   live.onEvents((events) => ...); live.sendAudio(float32Block); const summary = await live.end();
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
  static open(url, { token } = {}) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        if (token) {
          const withToken = new URL(url);
          withToken.searchParams.set("token", token);
          url = withToken.toString();
        }
        ws = new WebSocket(url);
      } catch (err) {
        reject(new LegatoError("connection_failed", `${url}: ${err.message}`));
        return;
      }
      const conn = new Connection(ws);
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
  const session = new PracticeSession(conn); // listening before anything can arrive
  const started = conn.next("started");
  conn.send(start);
  session.started = await started;
  return session;
}

export class PracticeSession {
  constructor(conn) {
    this.conn = conn;
    this.started = null; // the server's `started` message
    this.events = [];
    this.notices = [];
    this.listeners = [];
    conn.on("analysis", (m) => {
      this.events.push(...m.events);
      for (const fn of this.listeners) fn(m.events);
    });
    conn.on("error", (m) => this.notices.push(m));
  }

  /** `fn(events)` for each batch of events, as they arrive. */
  onEvents(fn) {
    this.listeners.push(fn);
  }

  /** Send interleaved float32 samples (any number of whole frames). */
  sendAudio(samples) {
    const block = samples instanceof Float32Array ? samples : Float32Array.from(samples);
    this.conn.ws.send(block.buffer.slice(block.byteOffset, block.byteOffset + block.byteLength));
  }

  /** No more audio: the remaining events arrive, then the summary (returned). */
  async end() {
    const summary = this.conn.next("summary");
    this.conn.send({ type: "end" });
    return summary;
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
