// The only module that knows the API's URLs (DESIGN §2, boundary 5).
//
// Every request carries the current credential: an API token (`Authorization: Bearer`), or on
// a read-only share page the dashboard's share token, which the API accepts the same way.
// Where a header cannot be set (EventSource, download links) the credential goes in `?token=`.

const BASE = "/api/v1";
/** Plotly.js as served by the backend from the installed plotly package (no CDN). */
export const PLOTLY_JS = "/static/plotly.min.js";
const SHARE_PAGE = /^\/share\/([^/?#]+)/;

let credential = null;
let onUnauthorized = () => {};

/** Set the credential used by every call, and what to do when the server answers 401. */
export function configure({ token, unauthorized }) {
  credential = token || null;
  if (unauthorized) onUnauthorized = unauthorized;
}

/** The share token when this page is a read-only share page (`/share/{token}`), else null. */
export function shareTokenFromLocation(loc = window.location) {
  const m = SHARE_PAGE.exec(loc.pathname);
  return m ? decodeURIComponent(m[1]) : null;
}

/** Absolute URL of the read-only page for a dashboard (`share_url` is a path). */
export function sharePageUrl(shareUrl) {
  return new URL(shareUrl, window.location.origin).toString();
}

/** An error answer: `status` is the HTTP status, `detail` the JSON `detail` (string or list). */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
  /** 422 details as a list of {loc, msg, type}; empty for other errors. */
  get fieldErrors() {
    return this.status === 422 && Array.isArray(this.detail) ? this.detail : [];
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function request(method, path, { params, body, headers = {}, accept = "application/json" } = {}) {
  const h = { Accept: accept, ...headers };
  if (credential) h.Authorization = `Bearer ${credential}`;
  const init = { method, headers: h };
  if (body !== undefined) {
    h["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(BASE + path + query(params), init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  if (resp.status === 401) onUnauthorized();
  if (!resp.ok) {
    let detail = `${resp.status} ${resp.statusText}`;
    try {
      const j = await resp.json();
      if (j && j.detail !== undefined) detail = j.detail;
    } catch { /* not JSON */ }
    throw new ApiError(resp.status, detail);
  }
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

function withToken(path, params = {}) {
  return BASE + path + query({ ...params, token: credential });
}

const id = (x) => encodeURIComponent(x);

// ---- identity, presets, schema -----------------------------------------------------------
export const me = () => request("GET", "/me");
export const health = () => request("GET", "/health");
export const presets = () => request("GET", "/presets");
export const openapi = () => request("GET", "/openapi.json");

// ---- sweeps ------------------------------------------------------------------------------
export const listSweeps = ({ limit, cursor } = {}) => request("GET", "/sweeps", { params: { limit, cursor } });
export const getSweep = (sweepId) => request("GET", `/sweeps/${id(sweepId)}`);
export const sweepResults = (sweepId) => request("GET", `/sweeps/${id(sweepId)}/results`);
export const sweepResultsCsv = (sweepId) =>
  request("GET", `/sweeps/${id(sweepId)}/results`, { params: { format: "csv" }, accept: "text/csv" });
export const sweepResultsCsvUrl = (sweepId) => withToken(`/sweeps/${id(sweepId)}/results`, { format: "csv" });
export const createSweep = (body, idempotencyKey) =>
  request("POST", "/sweeps", { body, headers: idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {} });
export const cancelSweep = (sweepId) => request("POST", `/sweeps/${id(sweepId)}/cancel`);
export const deleteSweep = (sweepId) => request("DELETE", `/sweeps/${id(sweepId)}`);

// ---- runs --------------------------------------------------------------------------------
export const listRuns = ({ sweep, status, method, order, sort, limit, cursor } = {}) =>
  request("GET", "/runs", { params: { sweep, status, method, order, sort, limit, cursor } });
export const getRun = (runId) => request("GET", `/runs/${id(runId)}`);
export const cancelRun = (runId) => request("POST", `/runs/${id(runId)}/cancel`);
export const retryRun = (runId) => request("POST", `/runs/${id(runId)}/retry`);
export const runResult = (runId) => request("GET", `/runs/${id(runId)}/result`);
export const runEventsPage = (runId, { after, limit } = {}) =>
  request("GET", `/runs/${id(runId)}/events`, { params: { after, limit } });
export const checkpointUrl = (runId) => withToken(`/runs/${id(runId)}/checkpoint`);

// ---- live event streams (Server-Sent Events) ---------------------------------------------
// EventSource cannot send headers: the credential travels as ?token=. It resends the last
// event id itself on reconnection, so nothing is missed or repeated.
export const runEvents = (runId) => new EventSource(withToken(`/runs/${id(runId)}/events`));
export const sweepEvents = (sweepId) => new EventSource(withToken(`/sweeps/${id(sweepId)}/events`));

// ---- queue -------------------------------------------------------------------------------
export const queue = () => request("GET", "/queue");

// ---- dashboards and share links ----------------------------------------------------------
export const createDashboard = (body) => request("POST", "/dashboards", { body });
export const listDashboards = ({ limit, cursor } = {}) => request("GET", "/dashboards", { params: { limit, cursor } });
export const deleteDashboard = (dashboardId) => request("DELETE", `/dashboards/${id(dashboardId)}`);
export const shared = (shareToken) => request("GET", `/share/${id(shareToken)}`);
