// Drives host/server/web/legato.js, the browser page's protocol client, against a running server:
// a playback session (credit, seek, end of track) and a live session (a 440 Hz tone).
// Usage: node --experimental-websocket tests/web/client.mjs URL TRACK; prints one JSON object.
import { Connection, LegatoError, startPlayback, startPractice } from "../../host/server/web/legato.js";

const [url, track] = process.argv.slice(2);
const report = {};

// ---- playback: the whole track, then a seek to its middle and to its end again ----
{
  const conn = await Connection.open(url);
  report.hello = conn.hello;
  const play = await startPlayback(conn, { track, bufferSeconds: 0.25 });
  report.track = play.track;
  let overdrawn = 0;
  const blocks = [];
  play.onAudio((samples, frame) => {
    if (play.received > play.granted) overdrawn += 1;
    blocks.push([frame, samples.length / play.channels, samples[0]]);
    play.played(samples.length / play.channels);
  });
  const ended = () => new Promise((resolve) => play.onEnd(resolve));
  await ended();
  report.first_pass = { blocks: blocks.length, frames: play.position };
  const middle = Math.floor(play.track.frames / 2);
  blocks.length = 0;
  play.seek(play.track.frames + 10); // refused: bad_seek, playback goes on
  play.seek(middle);
  await ended();
  report.second_pass = {
    first_frame: blocks.length ? blocks[0][0] : null,
    frames: blocks.reduce((n, b) => n + b[1], 0),
    position: play.position,
  };
  report.notices = play.notices.map((n) => n.code);
  report.overdrawn = overdrawn;
  report.events = play.events.map((e) => e.kind);
  report.playback_summary = await play.end();
  report.playback_closed = await new Promise((resolve) => {
    if (conn.closed) resolve(conn.closed);
    else conn.on("close", resolve);
  });
}

// ---- a refused track ----
{
  const conn = await Connection.open(url);
  try {
    await startPlayback(conn, { track: "../outside.wav" });
    report.refused = null;
  } catch (err) {
    report.refused = err instanceof LegatoError ? err.code : String(err);
  }
  conn.close();
}

// ---- live: one second of A4 in 1024-frame blocks ----
{
  const conn = await Connection.open(url);
  const rate = 44100;
  const session = await startPractice(conn, { sampleRate: rate, piece: "tone" });
  const tone = new Float32Array(rate);
  for (let i = 0; i < rate; i++) tone[i] = 0.3 * Math.sin((2 * Math.PI * 440 * i) / rate);
  for (let i = 0; i < rate; i += 1024) session.sendAudio(tone.subarray(i, i + 1024));
  const summary = await session.end();
  report.live = {
    notes: [...new Set(session.events.filter((e) => e.kind === "pitch" && e.voiced).map((e) => e.note))],
    samples: summary.samples,
    status: summary.status,
  };
}

// ---- live, resumed: the same melody twice, the second time with the connection dropped twice ----
{
  const rate = 44100;
  const melody = new Float32Array(3 * rate);
  for (let i = 0; i < melody.length; i++) {
    const f = [262, 330, 392][Math.floor((3 * i) / melody.length)];
    melody[i] = 0.3 * Math.sin((2 * Math.PI * f * i) / rate);
  }
  const run = async (drops) => {
    const conn = await Connection.open(url);
    const session = await startPractice(conn, { sampleRate: rate });
    const block = 2048;
    const blocks = Math.ceil(melody.length / block);
    for (let k = 0; k < blocks; k++) {
      if (drops.includes(k)) {
        while (!session.conn) await new Promise((r) => setTimeout(r, 10)); // back from the last
        session.conn.ws.close(3000, "dropped by the test");
        await new Promise((r) => setTimeout(r, 50));
      }
      session.sendAudio(melody.subarray(k * block, (k + 1) * block));
      await new Promise((r) => setTimeout(r, 2));
    }
    const summary = await session.end();
    return { session, summary };
  };
  const plain = await run([]);
  const cut = await run([20, 40]);
  const strip = (events) => events.map(({ seq, ...rest }) => rest);
  report.resumed = {
    resumes: cut.session.resumes,
    seqs_in_order: cut.session.events.every((e, i) => e.seq === i + 1),
    events_equal: JSON.stringify(strip(cut.session.events)) === JSON.stringify(strip(plain.session.events)),
    events: cut.session.events.length,
    practice_equal: JSON.stringify(cut.summary.practice) === JSON.stringify(plain.summary.practice),
    status: cut.summary.status,
  };
}

console.log(JSON.stringify(report));
