// Server-Sent Events over fetch, so that the credential travels in the Authorization header
// and never in a URL (EventSource cannot send headers). Same behaviour as EventSource
// (HTML Living Standard, "Server-sent events"): named events, `id:` remembered and sent back as
// Last-Event-ID when reconnecting, `retry:` honoured, reconnection after a dropped or ended
// stream, and 204 (or any other non-200 answer) ends it for good.

/**
 * Incremental parser of an event stream. feed(text) takes any chunk (a line may be split
 * across chunks, lines end in LF, CR or CRLF); for each complete event it calls
 * onEvent({type, data, lastEventId}), and onRetry(ms) for a `retry:` field.
 *
 * Example: feed("id: 1-0\nevent: epoch\ndata: {\"a\":1}\n\n") → onEvent({type: "epoch",
 * data: "{\"a\":1}", lastEventId: "1-0"}).
 */
export class SSEParser {
  constructor(onEvent, onRetry = () => {}) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.buffer = "";
    this.skipLF = false; // the previous chunk ended in CR: a leading LF belongs to it
    this.lastEventId = "";
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
  }

  feed(text) {
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    this.buffer += text;
    const re = /\r\n|\r|\n/g;
    let start = 0;
    let m;
    while ((m = re.exec(this.buffer)) !== null) {
      if (m[0] === "\r" && m.index === this.buffer.length - 1) {
        this.skipLF = true; // CR at the very end: maybe the first half of CRLF
      }
      this.line(this.buffer.slice(start, m.index));
      start = m.index + m[0].length;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        this.onEvent({ type: this.type || "message", data: this.data.join("\n"), lastEventId: this.lastEventId });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(Number(value));
  }
}

/**
 * An EventSource look-alike over fetch: new EventStream(url, {headers}) where headers() gives
 * the request headers (the Authorization header, read at each (re)connection); 502/503/504
 * answers are retried like a dropped connection (EventSource would give up). Listeners:
 * addEventListener(type, fn(message)) with message {type, data, lastEventId}; onopen and
 * onerror as in EventSource; onunauthorized() when the server answers 401 (the stream is then
 * closed). readyState is CONNECTING, OPEN or CLOSED.
 */
export class EventStream {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;

  constructor(url, { headers = () => ({}), retryMs = 2000, fetchImpl = (...a) => fetch(...a) } = {}) {
    this.url = url;
    this.headers = headers;
    this.retryMs = retryMs;
    this.fetchImpl = fetchImpl;
    this.CONNECTING = EventStream.CONNECTING;
    this.OPEN = EventStream.OPEN;
    this.CLOSED = EventStream.CLOSED;
    this.readyState = EventStream.CONNECTING;
    this.lastEventId = "";
    this.listeners = new Map();
    this.onopen = null;
    this.onerror = null;
    this.onunauthorized = null;
    this.controller = null;
    this.timer = null;
    setTimeout(() => this.connect(), 0); // listeners are added first, as with EventSource
  }

  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }

  close() {
    this.readyState = EventStream.CLOSED;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
  }

  fire(handler, arg) {
    if (typeof handler === "function") handler.call(this, arg);
  }

  async connect() {
    if (this.readyState === EventStream.CLOSED) return;
    this.readyState = EventStream.CONNECTING;
    this.controller = new AbortController();
    const h = { Accept: "text/event-stream", "Cache-Control": "no-cache", ...this.headers() };
    if (this.lastEventId) h["Last-Event-ID"] = this.lastEventId;
    let resp;
    try {
      resp = await this.fetchImpl(this.url, { headers: h, signal: this.controller.signal, cache: "no-store" });
    } catch {
      return this.dropped(); // network error (or closed meanwhile)
    }
    if (this.readyState === EventStream.CLOSED) return;
    // Unlike EventSource, a server or proxy that is briefly unavailable (502, 503, 504) is
    // retried: the stream resumes after the last event once it is back.
    if (resp.status === 502 || resp.status === 503 || resp.status === 504) return this.dropped();
    const type = resp.headers.get("Content-Type") || "";
    if (resp.status !== 200 || !type.startsWith("text/event-stream") || !resp.body) {
      // 204: the stream has nothing more and has ended; other answers are final too.
      this.readyState = EventStream.CLOSED;
      if (resp.status === 401) this.fire(this.onunauthorized);
      this.fire(this.onerror, { status: resp.status });
      return;
    }
    this.readyState = EventStream.OPEN;
    this.fire(this.onopen);
    const parser = new SSEParser((msg) => {
      if (this.readyState === EventStream.CLOSED) return;
      this.lastEventId = msg.lastEventId;
      for (const fn of this.listeners.get(msg.type) || []) fn.call(this, msg);
    }, (ms) => { this.retryMs = ms; });
    parser.lastEventId = this.lastEventId;
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch { /* dropped mid-stream */ }
    this.dropped();
  }

  dropped() {
    if (this.readyState === EventStream.CLOSED) return;
    this.readyState = EventStream.CONNECTING;
    this.fire(this.onerror, { status: 0 });
    if (this.readyState === EventStream.CLOSED) return; // onerror may close it
    this.timer = setTimeout(() => this.connect(), this.retryMs);
  }
}
