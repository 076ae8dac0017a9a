// The only module that knows the API's URLs (DESIGN §2, boundary 5).
//
// Every request carries the current credential in the `Authorization: Bearer` header: an API
// token, or on a read-only share page the dashboard's share token. Never in a URL (URLs end up
// in logs, histories and copied links; the API refuses `?token=`): event streams are read with
// fetch (js/sse.js), downloads are fetched and handed to the browser as a blob.

import { EventStream } from "./sse.js";

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
  const resp = await fetchOk(BASE + path + query(params), init);
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

/** fetch() that throws ApiError for an unreachable server or a non-2xx answer (with the API's
 * `detail`), and signs the user out on 401. */
async function fetchOk(url, init) {
  let resp;
  try {
    resp = await fetch(url, init);
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
  return resp;
}

function authHeaders() {
  return credential ? { Authorization: `Bearer ${credential}` } : {};
}

/** Fetch a file with the credential and offer it to the browser as `filename` (a blob URL). */
async function download(path, filename, params) {
  const resp = await fetchOk(BASE + path + query(params),
                             { headers: authHeaders(), cache: "no-store" });
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.style.display = "none";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A live event stream of `path` (Server-Sent Events read with fetch, credential in the header). */
function events(path) {
  const stream = new EventStream(BASE + path, { headers: authHeaders });
  stream.onunauthorized = () => onUnauthorized();
  return stream;
}

const id = (x) => encodeURIComponent(x);

// ---- identity, presets, schema -----------------------------------------------------------
export const me = () => request("GET", "/me");
export const health = () => request("GET", "/health");
export const presets = () => request("GET", "/presets");
export const datasets = () => request("GET", "/datasets");
export const openapi = () => request("GET", "/openapi.json");

// ---- sweeps ------------------------------------------------------------------------------
/** A page of sweeps: {limit, cursor} and any filters of GET /sweeps (q, tag, dataset, model, method, status, owner, created_from, created_to). */
export const listSweeps = (params = {}) => request("GET", "/sweeps", { params });
export const getSweep = (sweepId) => request("GET", `/sweeps/${id(sweepId)}`);
export const sweepResults = (sweepId) => request("GET", `/sweeps/${id(sweepId)}/results`);
export const sweepResultsCsv = (sweepId) =>
  request("GET", `/sweeps/${id(sweepId)}/results`, { params: { format: "csv" }, accept: "text/csv" });
/** Download the sweep's results CSV (as the API writes it) as `filename`. */
export const downloadSweepResultsCsv = (sweepId, filename) =>
  download(`/sweeps/${id(sweepId)}/results`, filename, { format: "csv" });
/**
 * Seed statistics of one sweep or several (SummaryPublic): opts {group_by (list or comma list),
 * baseline, attack}; null/empty options are left to the server's defaults.
 */
export const summary = (sweepIds, opts = {}) => (sweepIds.length === 1
  ? request("GET", `/sweeps/${id(sweepIds[0])}/summary`, { params: summaryParams(opts) })
  : request("GET", "/summary", { params: { sweeps: sweepIds.join(","), ...summaryParams(opts) } }));
/** Download the summary as the API writes it (format "csv" or "json") as `filename`. */
export const downloadSummary = (sweepIds, opts, format, filename) => (sweepIds.length === 1
  ? download(`/sweeps/${id(sweepIds[0])}/summary`, filename, { ...summaryParams(opts), format })
  : download("/summary", filename, { sweeps: sweepIds.join(","), ...summaryParams(opts), format }));
function summaryParams({ group_by: groupBy, baseline, attack } = {}) {
  return { group_by: Array.isArray(groupBy) ? groupBy.join(",") : groupBy, baseline, attack };
}
export const createSweep = (body, idempotencyKey) =>
  request("POST", "/sweeps", { body, headers: idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {} });
export const cancelSweep = (sweepId) => request("POST", `/sweeps/${id(sweepId)}/cancel`);
/** Set notes and/or tags ({notes, tags}) of a sweep or a run. */
export const annotateSweep = (sweepId, body) => request("PATCH", `/sweeps/${id(sweepId)}`, { body });
export const annotateRun = (runId, body) => request("PATCH", `/runs/${id(runId)}`, { body });
export const deleteSweep = (sweepId) => request("DELETE", `/sweeps/${id(sweepId)}`);

// ---- runs --------------------------------------------------------------------------------
/** A page of runs: {sweep, status, method, order, sort, limit, cursor} and the filters of GET /runs. */
export const listRuns = (params = {}) => request("GET", "/runs", { params });
export const getRun = (runId) => request("GET", `/runs/${id(runId)}`);
export const cancelRun = (runId) => request("POST", `/runs/${id(runId)}/cancel`);
export const retryRun = (runId) => request("POST", `/runs/${id(runId)}/retry`);
export const runResult = (runId) => request("GET", `/runs/${id(runId)}/result`);
export const runEventsPage = (runId, { after, limit } = {}) =>
  request("GET", `/runs/${id(runId)}/events`, { params: { after, limit } });
/** Download the run's checkpoint as `filename`. */
export const downloadCheckpoint = (runId, filename) => download(`/runs/${id(runId)}/checkpoint`, filename);

// ---- live event streams (Server-Sent Events) ---------------------------------------------
// Read with fetch so the credential stays in the header; the stream resends the last event id
// (Last-Event-ID) on reconnection, so nothing is missed or repeated.
export const runEvents = (runId) => events(`/runs/${id(runId)}/events`);
export const sweepEvents = (sweepId) => events(`/sweeps/${id(sweepId)}/events`);

// ---- queue -------------------------------------------------------------------------------
export const queue = () => request("GET", "/queue");

// ---- dashboards and share links ----------------------------------------------------------
export const createDashboard = (body) => request("POST", "/dashboards", { body });
export const listDashboards = ({ limit, cursor } = {}) => request("GET", "/dashboards", { params: { limit, cursor } });
export const deleteDashboard = (dashboardId) => request("DELETE", `/dashboards/${id(dashboardId)}`);
/** The shared dashboard of the current credential (a share token, sent in the header). */
export const shared = () => request("GET", "/share");
