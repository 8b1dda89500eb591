// Live updates while a page is shown: timers and sockets, all stopped on navigation.
import { token } from "./api.js";

const timers = new Set();
const sockets = new Set();

export function stopLive() {
  for (const id of timers) {
    clearInterval(id);
  }
  timers.clear();
  for (const ws of sockets) {
    ws.onclose = null;
    ws.close();
  }
  sockets.clear();
}

// Run `fn` every `ms` milliseconds until the page changes.
export function every(ms, fn) {
  const id = setInterval(() => {
    fn().catch?.(() => {});
  }, ms);
  timers.add(id);
  return id;
}

// Open the live feed (/api/v1/live) on `scope` ({scope: "device", id: 7, streams: [...]}),
// and call `onFrame` with each frame; `onFail` runs once if the feed cannot be opened or
// closes. The token goes in the first message (browsers cannot set WebSocket headers).
export function openFeed(scope, onFrame, onFail) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let failed = false;
  const fail = () => {
    if (!failed) {
      failed = true;
      sockets.delete(ws);
      onFail();
    }
  };
  const ws = new WebSocket(`${scheme}://${location.host}/api/v1/live`);
  sockets.add(ws);
  ws.onopen = () => ws.send(JSON.stringify({ token: token() || "", type: "subscribe", ...scope }));
  ws.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // a frame we do not understand is skipped
    }
    onFrame(frame);
  };
  ws.onerror = fail;
  ws.onclose = fail;
  return ws;
}
