// Live updates over Server-Sent Events. The server replays a stream's history first, then
// sends new events; ids are stream entry ids, so the stream (js/sse.js EventStream, read with
// fetch so the token stays in a header) resumes after a dropped connection with Last-Event-ID
// and misses nothing. A finished stream answers 204 to the reconnection, which closes it for
// good.

export const EVENT_TYPES = ["stage_started", "stage_finished", "epoch", "progress", "evaluation", "status", "log"];

/** The run an event belongs to (the service sets the event's `run` to the run id). */
export const runOf = (ev) => ev.run_id || ev.run;

/**
 * Listen to an EventStream (or an EventSource): handlers maps event type → fn(eventJson, streamId), and may have
 * onState(state) with state in connecting | live | reconnecting | closed, and finished() →
 * true once everything watched has ended (then a dropped connection is the stream's normal
 * end: it is closed instead of reconnected).
 * Returns a function that closes the connection.
 */
export function listen(source, handlers) {
  const state = handlers.onState || (() => {});
  const finished = handlers.finished || (() => false);
  state("connecting");
  for (const type of EVENT_TYPES) {
    if (!handlers[type]) continue;
    source.addEventListener(type, (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch {
        return;
      }
      handlers[type](data, msg.lastEventId);
    });
  }
  source.onopen = () => state("live");
  source.onerror = () => {
    if (source.readyState !== source.CLOSED && finished()) source.close();
    state(source.readyState === source.CLOSED ? "closed" : "reconnecting");
  };
  return () => {
    source.close();
    state("closed");
  };
}

/** A small "● live" indicator element driven by listen()'s onState. */
export function liveIndicator(doc = document) {
  const el = doc.createElement("span");
  el.className = "live-state";
  const set = (s) => {
    el.dataset.state = s;
    el.textContent = { connecting: "○ connecting", live: "● live", reconnecting: "○ reconnecting…", closed: "■ finished" }[s] || s;
    el.title = s === "closed" ? "the event stream ended (all runs finished) or was closed" : "Server-Sent Events";
  };
  set("connecting");
  return { el, set };
}
