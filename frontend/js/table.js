// A table over one page of a cursor-paginated API list. Only the current page is fetched and
// rendered, so it stays fast however many rows the server holds. A column with `serverSort`
// orders all rows on the server (the page is fetched again from the first one); other
// columns sort the rows of the page shown.

import { h, mount, download, notify, errorText, syncRows } from "./dom.js";
import { toCSV, toJSON } from "./export.js";

export class PagedTable {
  /**
   * columns: [{key, label, render(row) → node|string, value(row) → sortable/exported value,
   *             serverSort: API field to order all rows by (optional),
   *             hidden: exported but not shown (optional)}]
   * fetchPage({limit, cursor, sort, order}) → {items, total, next}
   * selectable: rows get a checkbox; `selected` holds their ids.
   */
  constructor({ columns, fetchPage, name, selectable = false, limit = 50, emptyText = "Nothing here yet.", onRender }) {
    this.columns = columns;
    this.fetchPage = fetchPage;
    this.name = name;
    this.selectable = selectable;
    this.limit = limit;
    this.emptyText = emptyText;
    this.onRender = onRender || (() => {});
    this.cursors = [null]; // cursor of each page visited; the last is the current page
    this.rows = [];
    this.total = 0;
    this.next = null;
    this.sort = null; // {key, dir}
    this.selected = new Set();
    this.seq = 0;
    this.inflight = false;

    this.tbody = h("tbody");
    this.thead = h("thead");
    this.info = h("span", { class: "page-info" });
    this.prevBtn = h("button", { class: "btn small", onclick: () => this.prev(), "data-page": "prev" }, "‹ Prev");
    this.nextBtn = h("button", { class: "btn small", onclick: () => this.nextPage(), "data-page": "next" }, "Next ›");
    const sizes = h("select", { class: "page-size", title: "rows per page", onchange: (e) => this.setLimit(Number(e.target.value)) },
      [25, 50, 100, 200].map((n) => h("option", { value: n, selected: n === limit }, `${n} / page`)));
    this.el = h("div", { class: "table-wrap", "data-table": name },
      h("div", { class: "table-scroll" }, h("table", { class: "data" }, this.thead, this.tbody)),
      h("div", { class: "table-foot" }, this.info, this.prevBtn, this.nextBtn, sizes,
        h("span", { class: "spacer" }),
        h("button", { class: "btn small", "data-export": "csv", title: "Download this page as CSV",
          onclick: () => download(`${name}.csv`, toCSV(this.exportRows()), "text/csv") }, "CSV"),
        h("button", { class: "btn small", "data-export": "json", title: "Download this page as JSON",
          onclick: () => download(`${name}.json`, toJSON(this.exportRows()), "application/json") }, "JSON")));
    this.renderHead();
  }

  /**
   * Fetch the current page again (after reset(), or as a live refresh with quiet: true, which
   * is skipped while another load is in flight and throws instead of notifying). A newer load
   * supersedes an older one still in flight.
   */
  async load({ quiet = false } = {}) {
    if (quiet && this.inflight) return;
    const seq = ++this.seq;
    this.inflight = true;
    if (!quiet) this.el.classList.add("loading");
    try {
      const server = this.serverSortColumn();
      const page = await this.fetchPage({ limit: this.limit, cursor: this.cursors[this.cursors.length - 1],
        ...(server ? { sort: server.serverSort, order: this.sort.dir > 0 ? "asc" : "desc" } : {}) });
      if (seq !== this.seq) return;
      this.rows = page.items;
      this.total = page.total;
      this.next = page.next;
      const ids = new Set(this.rows.map((r) => r.id));
      for (const id of [...this.selected]) if (!ids.has(id)) this.selected.delete(id);
      this.renderBody();
    } catch (e) {
      if (quiet) throw e;
      if (seq === this.seq) notify(errorText(e), "error");
    } finally {
      if (seq === this.seq) {
        this.inflight = false;
        this.el.classList.remove("loading");
      }
    }
  }

  /** Back to the first page (filters changed). */
  /**
   * Reload the page quietly every `ms` while the tab is shown and some row is `active(row)`
   * (e.g. not finished yet); returns the function that stops it.
   */
  refreshWhile(active, ms) {
    const timer = setInterval(() => {
      if (document.hidden || !this.rows.some(active)) return;
      this.load({ quiet: true }).catch(() => {});
    }, ms);
    return () => clearInterval(timer);
  }

  reset() {
    this.cursors = [null];
    this.selected.clear();
    return this.load();
  }

  setLimit(n) {
    this.limit = n;
    return this.reset();
  }

  nextPage() {
    if (!this.next) return null;
    this.cursors.push(this.next);
    this.selected.clear();
    return this.load();
  }

  prev() {
    if (this.cursors.length < 2) return null;
    this.cursors.pop();
    this.selected.clear();
    return this.load();
  }

  shownColumns() {
    return this.columns.filter((c) => !c.hidden);
  }

  /** The column the rows are ordered by on the server, if the sort is a server one. */
  serverSortColumn() {
    if (!this.sort) return null;
    const col = this.columns.find((c) => c.key === this.sort.key);
    return col && col.serverSort ? col : null;
  }

  sortedRows() {
    if (!this.sort || this.serverSortColumn()) return this.rows;
    const col = this.columns.find((c) => c.key === this.sort.key);
    const val = col.value || ((r) => r[col.key]);
    const dir = this.sort.dir;
    return [...this.rows].sort((a, b) => {
      const x = val(a);
      const y = val(b);
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * dir;
    });
  }

  exportRows() {
    return this.sortedRows().map((r) => Object.fromEntries(this.columns.filter((c) => c.export !== false)
      .map((c) => [c.key, c.value ? c.value(r) : r[c.key]])));
  }

  renderHead() {
    const cells = this.shownColumns().map((c) => {
      const mark = this.sort && this.sort.key === c.key ? (this.sort.dir > 0 ? " ▲" : " ▼") : "";
      return h("th", {
        class: c.sortable === false ? "" : "sortable",
        title: c.sortable === false ? null : c.serverSort ? "sort all rows" : "sort the rows of this page",
        "data-col": c.key,
        onclick: c.sortable === false ? null : () => this.toggleSort(c.key),
      }, c.label, mark);
    });
    if (this.selectable) {
      this.selectAll = h("input", { type: "checkbox", title: "select this page", "data-select": "page",
        onchange: (e) => this.selectPage(e.target.checked) });
      cells.unshift(h("th", { class: "check" }, this.selectAll));
    }
    mount(this.thead, h("tr", {}, cells));
  }

  toggleSort(key) {
    const wasServer = this.serverSortColumn();
    this.sort = this.sort && this.sort.key === key ? (this.sort.dir > 0 ? { key, dir: -1 } : null) : { key, dir: 1 };
    this.renderHead();
    if (wasServer || this.serverSortColumn()) return this.reset();
    this.renderBody();
    return null;
  }

  selectPage(on) {
    for (const r of this.rows) if (on) this.selected.add(r.id); else this.selected.delete(r.id);
    this.renderBody();
  }

  renderBody() {
    const rows = this.sortedRows();
    const span = this.shownColumns().length + (this.selectable ? 1 : 0);
    if (!rows.length) {
      mount(this.tbody, h("tr", {}, h("td", { colspan: span, class: "empty" }, this.emptyText)));
    } else {
      // Rows are updated in place, keyed by id: a live refresh re-renders only the rows whose
      // data changed and keeps every <tr> (clicks and text selection survive it).
      syncRows(this.tbody, rows, (r) => r.id, (r) => {
        const sig = JSON.stringify(r);
        const cells = this.shownColumns().map((c) => ({ class: c.class || null, col: c.key, sig,
          render: () => (c.render ? c.render(r) : ((c.value ? c.value(r) : r[c.key]) ?? "–")) }));
        if (this.selectable) {
          const on = this.selected.has(r.id);
          cells.unshift({ class: "check", sig: String(on), render: () => h("input", { type: "checkbox", checked: on, "data-select": r.id,
            onchange: (e) => { if (e.target.checked) this.selected.add(r.id); else this.selected.delete(r.id); this.renderSelection(); } }) });
        }
        return cells;
      }, (r) => (this.selected.has(r.id) ? "selected" : null));
    }
    const page = this.cursors.length;
    const first = this.total ? (page - 1) * this.limit + 1 : 0;
    const last = (page - 1) * this.limit + this.rows.length;
    this.info.textContent = `${first}–${last} of ${this.total.toLocaleString()}`;
    this.prevBtn.disabled = page < 2;
    this.nextBtn.disabled = !this.next;
    this.renderSelection();
    this.onRender(this);
  }

  renderSelection() {
    if (this.selectAll) {
      const n = this.rows.filter((r) => this.selected.has(r.id)).length;
      this.selectAll.checked = n > 0 && n === this.rows.length;
      this.selectAll.indeterminate = n > 0 && n < this.rows.length;
    }
    for (const tr of this.tbody.querySelectorAll("tr[data-id]")) tr.classList.toggle("selected", this.selected.has(tr.dataset.id));
    this.el.dispatchEvent(new CustomEvent("selection", { detail: [...this.selected] }));
  }
}
