// taskflow dashboard: plain JavaScript, no build step, no third-party code.
//
// Safety: every value that comes from the server (task arguments, errors, names) reaches the page
// through textContent or setAttribute, never through innerHTML, so it is always shown as text.
//
// Scale: only one page of tasks (at most 100) is ever loaded; paging is done by the server with
// cursors. Live updates arrive over server-sent events and patch the rows on screen.
"use strict";

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute("content") || "";
  const BASE = meta("taskflow-base");
  const CSRF = meta("taskflow-csrf");
  const AUTH = meta("taskflow-auth") === "on";
  const STATUSES = ["scheduled", "pending", "running", "success", "failed", "interrupted", "cancelled"];
  const TERMINAL = new Set(["success", "failed", "interrupted", "cancelled"]);
  const STATUS_LABEL = {
    scheduled: "Scheduled", pending: "Pending", running: "Running", success: "Succeeded", failed: "Failed", interrupted: "Interrupted",
    cancelled: "Cancelled",
  };
  // Task controls (cancel...) live in control.js; it is handed what it needs here.
  const controls = window.taskflowControls || { row() {}, detail() {} };

  const state = {
    filters: { status: "", func: "", instance: "", id: "", tags: [], since: "", until: "" },
    pageSize: 50,
    cursors: [null], // cursors[n] opens page n
    page: 0,
    nextCursor: null,
    cursorStale: false, // live inserts pushed rows off page 0: its cursor must be fetched again
    rows: new Map(), // task id -> { rec, tr, dirty, flash }
    order: [],
    loading: 0,
    queued: [], // task events that arrived while a page was loading
    queueOverflow: false,
    metrics: null,
    selected: null,
    instances: new Set(),
    renderPending: false,
  };

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers: text only -------------------------------------------------------------

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child); // strings become Text nodes
    }
    return node;
  }

  // Ids begin with their creation time, so the random end is what tells them apart at a glance.
  const shortId = (id) => `…${(id || "").slice(-10)}`;
  const sortTime = (rec) => Date.parse(rec.end_time || rec.created_at) || 0;
  const firstLine = (text) => (text || "").split("\n", 1)[0];

  function fmtTime(iso, full) {
    if (!iso) return "—";
    const date = new Date(iso);
    const sameDay = date.toDateString() === new Date().toDateString();
    if (full || !sameDay) {
      return date.toLocaleString([], {
        year: full ? "numeric" : undefined, month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
      });
    }
    return date.toLocaleTimeString([], { hour12: false });
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 0.001) return "<1 ms";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(2)} s`;
    const minutes = Math.floor(seconds / 60);
    return `${minutes} m ${Math.round(seconds - minutes * 60)} s`;
  }

  const fmtCount = (n) => (typeof n === "number" ? n.toLocaleString() : "–");
  const badge = (status) => h("span", { class: `badge ${status}`, text: STATUS_LABEL[status] || status });

  let toastTimer = null;
  function toast(message, kind) {
    const node = $("toast");
    node.textContent = message;
    node.className = `toast ${kind || ""}`;
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 4000);
  }

  // ---- the API ------------------------------------------------------------------------------

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (options.body) headers["Content-Type"] = "application/json";
    if (options.method && options.method !== "GET" && CSRF) headers["X-CSRF-Token"] = CSRF;
    const response = await fetch(BASE + path, { ...options, headers, credentials: "same-origin" });
    if (response.status === 401) {
      window.location.assign(`${BASE}/login`);
      throw new Error("login required");
    }
    return response;
  }

  async function detailOf(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
      // Validation errors (422) are a list of {loc, msg, type}.
      if (Array.isArray(body.detail)) return body.detail.map((error) => error.msg).join("; ");
      return JSON.stringify(body.detail);
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  // admin.js and schedules.js (loaded after this file) call the API through these too.
  window.taskflowApi = Object.freeze({ api, detailOf });

  // ---- tasks: one page at a time ------------------------------------------------------------

  function listQuery(cursor) {
    const params = new URLSearchParams({ limit: String(state.pageSize) });
    const f = state.filters;
    if (f.status) params.set("status", f.status);
    if (f.func) params.set("func_name", f.func);
    if (f.instance) params.set("instance_id", f.instance);
    if (f.id) params.set("id_contains", f.id);
    for (const tag of f.tags) params.append("tag", tag);
    if (f.since) params.set("since", f.since);
    if (f.until) params.set("until", f.until);
    if (cursor) params.set("cursor", cursor);
    return `?${params}`;
  }

  function matches(rec) {
    const f = state.filters;
    return (!f.status || rec.status === f.status) && (!f.func || rec.func_name === f.func)
      && (!f.instance || rec.instance_id === f.instance) && (!f.id || rec.task_id.includes(f.id))
      && f.tags.every((tag) => { const at = tag.indexOf(":"); return (rec.tags || {})[tag.slice(0, at)] === tag.slice(at + 1); })
      && (!f.since || sortTime(rec) >= Date.parse(f.since))
      && (!f.until || sortTime(rec) <= Date.parse(f.until));
  }

  let loadSeq = 0;
  async function loadPage() {
    const seq = ++loadSeq;
    state.loading += 1;
    $("tasks").classList.add("busy");
    try {
      const response = await api(listQuery(state.cursors[state.page]));
      if (seq !== loadSeq) return; // a newer load replaced this one
      if (!response.ok) {
        toast(await detailOf(response), "error");
        return;
      }
      const body = await response.json();
      if (seq !== loadSeq) return;
      state.nextCursor = body.next_cursor;
      state.cursorStale = false;
      state.rows = new Map();
      state.order = [];
      for (const rec of body.items) {
        state.rows.set(rec.task_id, { rec, tr: null, dirty: true, flash: false });
        state.order.push(rec.task_id);
        noteInstance(rec.instance_id);
      }
    } finally {
      state.loading -= 1;
      if (seq === loadSeq) {
        $("tasks").classList.remove("busy");
        const queued = state.queued.splice(0);
        if (state.queueOverflow) {
          state.queueOverflow = false;
          loadPage();
        } else {
          for (const message of queued) onTask(message);
          renderRows();
        }
      }
    }
  }

  function resetPaging() {
    state.cursors = [null];
    state.page = 0;
  }

  function onTask(message) {
    if (state.loading) {
      if (state.queued.length < 1000) state.queued.push(message);
      else state.queueOverflow = true; // too many to replay: the page is loaded again instead
      return;
    }
    const rec = message.task;
    const known = state.rows.get(rec.task_id);
    if (known && TERMINAL.has(known.rec.status) && !TERMINAL.has(rec.status)) return; // stale
    noteInstance(rec.instance_id);
    if (state.selected === rec.task_id) renderDetail(rec);
    if (known) {
      Object.assign(known, { rec, dirty: true, flash: true });
      if (state.page === 0 && !matches(rec)) {
        state.rows.delete(rec.task_id);
        state.order = state.order.filter((id) => id !== rec.task_id);
      }
    } else if (state.page === 0 && matches(rec)) {
      state.rows.set(rec.task_id, { rec, tr: null, dirty: true, flash: true });
      state.order.push(rec.task_id);
    }
    scheduleRender();
  }

  function scheduleRender() {
    if (state.renderPending) return;
    state.renderPending = true;
    requestAnimationFrame(renderRows);
  }

  function placeRows() {
    if (state.page !== 0) return; // older pages keep the server's order and only patch rows
    const newestFirst = (a, b) => {
      const ra = state.rows.get(a).rec;
      const rb = state.rows.get(b).rec;
      return sortTime(rb) - sortTime(ra) || (rb.task_id > ra.task_id ? 1 : -1);
    };
    state.order.sort(newestFirst);
    while (state.order.length > state.pageSize) {
      state.rows.delete(state.order.pop());
      state.cursorStale = true;
    }
  }

  function renderRows() {
    state.renderPending = false;
    placeRows();
    const tbody = $("rows");
    let cursor = tbody.firstChild;
    for (const id of state.order) {
      const row = state.rows.get(id);
      if (!row.tr) row.tr = h("tr", { "data-id": id });
      if (row.dirty) fillRow(row);
      if (row.tr === cursor) cursor = cursor.nextSibling;
      else tbody.insertBefore(row.tr, cursor);
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    if (!state.order.length) tbody.append(emptyRow());
    renderPager();
  }

  function fillRow(row) {
    const { rec, tr } = row;
    const running = rec.status === "running" && rec.start_time;
    tr.replaceChildren(
      h("td", null, badge(rec.status)),
      h("td", null, h("span", { class: "mono", title: rec.task_id, text: shortId(rec.task_id) }),
        rec.retry_of ? h("span", { class: "tag", text: "retry" }) : null),
      h("td", { class: "fn", text: rec.func_name }),
      h("td", { class: "muted mono small", text: rec.instance_id }),
      h("td", { class: "muted", title: rec.created_at, text: fmtTime(rec.created_at) }),
      h("td", { class: running ? "num live-duration" : "num", "data-start": running ? rec.start_time : null,
        text: running ? fmtDuration((Date.now() - Date.parse(rec.start_time)) / 1000) : fmtDuration(rec.duration) }),
      h("td", { class: "num", text: String(rec.attempts) }),
      h("td", { class: "err", title: rec.error || null, text: firstLine(rec.error) }),
    );
    controls.row(rec, tr, ui);
    tr.className = state.selected === rec.task_id ? "selected" : "";
    if (row.flash) {
      tr.classList.add("flash");
      setTimeout(() => tr.classList.remove("flash"), 1200);
    }
    row.dirty = false;
    row.flash = false;
  }

  function emptyRow() {
    const scanning = state.nextCursor && (state.filters.instance || state.filters.id);
    const text = scanning
      ? "No matching tasks in this stretch of history yet. Older → keeps searching."
      : "No tasks match these filters.";
    return h("tr", { class: "empty" }, h("td", { colspan: "8", text }));
  }

  function renderPager() {
    $("newer").disabled = state.page === 0;
    $("newest").disabled = state.page === 0;
    $("older").disabled = !state.nextCursor && !state.cursorStale;
    const shown = state.order.length;
    $("page-info").textContent = `Page ${state.page + 1} · ${shown} task${shown === 1 ? "" : "s"}`;
  }

  async function goOlder() {
    if (state.page === 0 && state.cursorStale) {
      const response = await api(listQuery(null)); // live rows moved the page: fresh cursor
      if (response.ok) state.nextCursor = (await response.json()).next_cursor;
    }
    if (!state.nextCursor) return renderPager();
    state.cursors[state.page + 1] = state.nextCursor;
    state.page += 1;
    return loadPage();
  }

  function tickRunning() {
    for (const cell of document.querySelectorAll("td.live-duration")) {
      const start = Date.parse(cell.getAttribute("data-start"));
      if (start) cell.textContent = fmtDuration((Date.now() - start) / 1000);
    }
  }

  function noteInstance(instance) {
    if (!instance || state.instances.has(instance)) return;
    state.instances.add(instance);
    $("instances").append(h("option", { value: instance }));
  }

  // ---- detail panel -------------------------------------------------------------------------

  async function openDetail(id) {
    state.selected = id;
    for (const row of state.rows.values()) row.tr?.classList.toggle("selected", row.rec.task_id === id);
    $("detail").hidden = false;
    $("retry").hidden = true;
    $("cancel").hidden = true;
    $("detail-body").replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    const response = await api(`/${encodeURIComponent(id)}`);
    if (state.selected !== id) return;
    if (response.ok) renderDetail(await response.json());
    else {
      const text = response.status === 404
        ? "Not found here yet: a task shows on every instance once it has finished."
        : await detailOf(response);
      $("detail-body").replaceChildren(h("p", { class: "muted mono small", text: id }), h("p", { text }));
    }
  }

  function closeDetail() {
    state.selected = null;
    $("detail").hidden = true;
    for (const row of state.rows.values()) row.tr?.classList.remove("selected");
  }

  function asJson(value) {
    const line = JSON.stringify(value);
    return line.length <= 72 ? line : JSON.stringify(value, null, 2);
  }

  function field(label, value, cls) {
    return [h("dt", { text: label }), h("dd", { class: cls || null }, value)];
  }

  function renderDetail(rec) {
    const retryOf = rec.retry_of
      ? h("button", { type: "button", class: "link mono", "data-open": rec.retry_of, text: shortId(rec.retry_of) })
      : "—";
    const facts = h("dl", { class: "facts" },
      ...field("Status", badge(rec.status)),
      ...field("Function", rec.func_name, "mono"),
      ...field("Instance", rec.instance_id || "—", "mono"),
      ...field("Created", fmtTime(rec.created_at, true)),
      ...field("Started", fmtTime(rec.start_time, true)),
      ...field("Finished", fmtTime(rec.end_time, true)),
      ...field("Duration", fmtDuration(rec.duration)),
      ...field("Attempts", String(rec.attempts)),
      ...field("Retry of", retryOf));
    const parts = [h("p", { class: "mono task-id", text: rec.task_id }), facts];
    if (rec.error) parts.push(h("h3", { text: "Error" }), h("pre", { class: "error", text: rec.error }));
    if (rec.traceback) parts.push(h("h3", { text: "Traceback" }), h("pre", { class: "traceback", text: rec.traceback }));
    parts.push(h("h3", { text: "Arguments" }));
    if ("args" in rec || "kwargs" in rec) {
      parts.push(h("div", { class: "args-label", text: "args" }),
        h("pre", { class: "args", text: asJson(rec.args ?? []) }),
        h("div", { class: "args-label", text: "kwargs" }),
        h("pre", { class: "args", text: asJson(rec.kwargs ?? {}) }));
    } else {
      parts.push(h("p", { class: "muted", text: "Not shown: arguments are shown only with display_func_args=True." }));
    }
    $("detail-body").replaceChildren(...parts);
    const retry = $("retry");
    // The server says whether a retry would run from any instance (exact arguments stored).
    retry.hidden = !rec.retryable;
    retry.disabled = false;
    retry.dataset.id = rec.task_id;
    controls.detail(rec, $("detail-body"), ui);
  }

  async function retrySelected() {
    const button = $("retry");
    const id = button.dataset.id;
    button.disabled = true;
    const response = await api(`/${encodeURIComponent(id)}/retry`, { method: "POST" });
    if (response.status === 202) {
      const body = await response.json();
      toast(`Retry started as task ${shortId(body.task_id)}`);
      await openDetail(body.task_id);
    } else {
      button.disabled = false;
      toast(await detailOf(response), "error");
    }
  }

  // ---- figures ------------------------------------------------------------------------------

  async function loadMetrics() {
    const response = await api("/metrics");
    if (response.ok) {
      state.metrics = await response.json();
      renderMetrics();
    }
  }

  function applyMetrics(delta) {
    const m = state.metrics;
    if (!m) return;
    for (const [key, value] of Object.entries(delta)) {
      const isObject = value && typeof value === "object" && !Array.isArray(value);
      if (isObject && m[key] && typeof m[key] === "object") {
        for (const [inner, v] of Object.entries(value)) {
          if (v === null) delete m[key][inner];
          else m[key][inner] = v;
        }
      } else {
        m[key] = value;
      }
    }
    renderMetrics();
  }

  function renderMetrics() {
    const m = state.metrics;
    const byStatus = m.by_status || {};
    let total = 0;
    for (const status of STATUSES) {
      total += byStatus[status] || 0;
      $(`count-${status}`).textContent = fmtCount(byStatus[status] || 0);
    }
    $("count-total").textContent = fmtCount(total);
    const funcs = Object.entries(m.by_func || {}).sort((a, b) => b[1].count - a[1].count || (a[0] > b[0] ? 1 : -1));
    $("func-rows").replaceChildren(...funcs.map(([name, f]) => funcRow(name, f)));
    if (!funcs.length) $("func-rows").append(h("tr", { class: "empty" }, h("td", { colspan: "5", text: "No tasks yet." })));
    $("window-info").textContent = m.window ? `rates and durations: newest ${fmtCount(m.window)} tasks` : "";
    const p = m.persistence || {};
    const backend = p.backend ? `History: ${p.backend}` : "History: this instance's memory only";
    const health = p.ready === false ? " · backend unreachable" : "";
    $("health").textContent = `${backend}${health} · unflushed ${fmtCount(p.unflushed || 0)}`;
    $("health").classList.toggle("bad", p.ready === false);
    syncFunctionFilter(funcs.map(([name]) => name));
  }

  function funcRow(name, f) {
    const rate = f.failure_rate;
    const bar = h("span", { class: "bar" }, h("span", { class: "bar-fill" }));
    bar.firstChild.style.width = `${Math.round((rate || 0) * 100)}%`;
    bar.classList.toggle("warn", rate !== null && rate >= 0.05);
    const rateText = rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(rate < 0.1 && rate > 0 ? 1 : 0)}%`;
    return h("tr", null,
      h("td", { class: "fn", title: name, text: name }),
      h("td", { class: "num", text: fmtCount(f.count) }),
      h("td", { class: "rate" }, bar, h("span", { class: "rate-text", text: rateText })),
      h("td", { class: "num", text: fmtDuration(f.p50) }),
      h("td", { class: "num", text: fmtDuration(f.p95) }));
  }

  function syncFunctionFilter(names) {
    const select = $("f-func");
    const known = new Set([...select.options].map((o) => o.value));
    for (const name of names.slice().sort()) {
      if (!known.has(name)) select.append(h("option", { value: name, text: name }));
    }
  }

  // ---- live updates -------------------------------------------------------------------------

  function setConnection(status, text) {
    $("conn").dataset.state = status;
    $("conn-text").textContent = text;
  }

  function refresh() {
    loadPage();
    loadMetrics();
  }

  let source = null;
  function connect() {
    source = new EventSource(`${BASE}/stream`);
    setConnection("connecting", "connecting");
    // Every (re)connection says hello: load the view then, so nothing between the two is missed.
    source.addEventListener("hello", (event) => {
      const hello = JSON.parse(event.data);
      setConnection("live", `Live · ${hello.instance_id}`);
      refresh();
    });
    source.addEventListener("task", (event) => onTask(JSON.parse(event.data)));
    source.addEventListener("metrics", (event) => applyMetrics(JSON.parse(event.data)));
    source.addEventListener("resync", refresh);
    source.addEventListener("bye", () => setConnection("connecting", "reconnecting"));
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) {
        setConnection("connecting", "reconnecting");
        return;
      }
      // Refused (e.g. the session expired): api() goes to the login page on a 401.
      setConnection("offline", "offline");
      source.close();
      api("/metrics").catch(() => {}).finally(() => setTimeout(connect, 3000));
    };
  }

  // ---- wiring -------------------------------------------------------------------------------

  function debounce(fn, ms) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  // A datetime-local value is the browser's local time: the API gets it as UTC ISO 8601.
  const isoOf = (local) => (local && !Number.isNaN(Date.parse(local)) ? new Date(local).toISOString() : "");

  function readFilters() {
    state.filters = {
      status: $("f-status").value,
      func: $("f-func").value,
      instance: $("f-instance").value.trim(),
      id: $("f-id").value.trim().toLowerCase(),
      tags: $("f-tag").value.split(",").map((tag) => tag.trim()).filter(Boolean),
      since: isoOf($("f-since").value),
      until: isoOf($("f-until").value),
    };
    resetPaging();
    loadPage();
  }

  function wire() {
    const typed = debounce(readFilters, 250);
    $("f-status").addEventListener("change", readFilters);
    $("f-func").addEventListener("change", readFilters);
    $("f-instance").addEventListener("input", typed);
    $("f-id").addEventListener("input", typed);
    $("f-tag").addEventListener("input", typed);
    $("f-since").addEventListener("change", readFilters);
    $("f-until").addEventListener("change", readFilters);
    document.addEventListener("taskflow:refresh", refresh); // admin.js after a bulk action
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); readFilters(); });
    $("f-clear").addEventListener("click", () => {
      for (const id of ["f-status", "f-func", "f-instance", "f-id", "f-tag", "f-since", "f-until"]) $(id).value = "";
      readFilters();
    });
    $("page-size").addEventListener("change", () => {
      state.pageSize = Number($("page-size").value);
      resetPaging();
      loadPage();
    });
    $("newest").addEventListener("click", () => { resetPaging(); loadPage(); });
    $("newer").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); loadPage(); });
    $("older").addEventListener("click", goOlder);
    $("rows").addEventListener("click", (event) => {
      const tr = event.target.closest("tr[data-id]");
      if (tr) openDetail(tr.getAttribute("data-id"));
    });
    $("detail-body").addEventListener("click", (event) => {
      const target = event.target.closest("[data-open]");
      if (target) openDetail(target.getAttribute("data-open"));
    });
    $("detail-close").addEventListener("click", closeDetail);
    document.addEventListener("keydown", (event) => { if (event.key === "Escape") closeDetail(); });
    $("retry").addEventListener("click", retrySelected);
    const logout = $("logout");
    logout.hidden = !AUTH;
    logout.addEventListener("click", async () => {
      let response;
      try {
        response = await api("/logout", { method: "POST" });
      } catch (error) {
        // On a 401 api() is already on its way to the login page.
        if (error.message !== "login required") toast("Logout failed: no answer from the server", "error");
        return;
      }
      if (!response.ok) {
        toast(await detailOf(response), "error"); // e.g. 503: not ended on every instance yet
        return;
      }
      window.location.assign(`${BASE}/login`);
    });
    setInterval(tickRunning, 1000);
  }

  const ui = { api, toast, detailOf, h, shortId, openDetail, renderDetail, fmtTime, selected: () => state.selected };
  controls.wire?.(ui);
  wire();
  refresh();
  connect();
})();
