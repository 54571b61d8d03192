// taskflow dashboard, admin actions: bulk retry and purge (a count first, then a confirmation)
// and the audit trail. Plain JavaScript beside app.js; it reads the filter fields app.js owns and
// asks app.js to reload the view with a "taskflow:refresh" event after an action.
//
// Safety: as in app.js, every value from the server reaches the page through textContent or
// setAttribute, never innerHTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  let toastTimer = null;
  function toast(message, kind) {
    const node = $("toast");
    node.textContent = message;
    node.className = `toast ${kind || ""}`;
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 6000);
  }

  const { api, detailOf } = window.taskflowApi; // app.js


  const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  const isoOf = (local) => (local && !Number.isNaN(Date.parse(local)) ? new Date(local).toISOString() : "");

  // ---- bulk actions -------------------------------------------------------------------------

  // The filters on screen, as a bulk action's JSON body (those bulk actions take).
  function currentFilters() {
    const body = {};
    const status = $("f-status").value;
    const func = $("f-func").value;
    const since = isoOf($("f-since").value);
    const until = isoOf($("f-until").value);
    if (status) body.status = status;
    if (func) body.func_name = func;
    if (since) body.since = since;
    if (until) body.until = until;
    return body;
  }

  function describe(body) {
    const parts = [];
    parts.push(body.status ? `status ${body.status}` : null);
    parts.push(body.func_name ? `function ${body.func_name}` : null);
    parts.push(body.since ? `from ${new Date(body.since).toLocaleString()}` : null);
    parts.push(body.until ? `to ${new Date(body.until).toLocaleString()}` : null);
    const shown = parts.filter(Boolean);
    return shown.length ? shown.join(" · ") : "no filter: every task";
  }

  const ACTIONS = {
    retry: {
      path: "/bulk/retry",
      title: "Retry matching tasks",
      hint: "Bulk retry applies to failed or interrupted tasks.",
      counted: (n) => `${plural(n, "failed or interrupted task")} match. Each runs again once, wherever it ran; tasks retried already are not run again.`,
      confirm: (n) => `Retry ${plural(Math.min(n, 100), "task")}`,
      body: () => ({ limit: 100 }),
      done: (r) => `Retried ${plural(r.retried, "task")}` + (r.already_retried ? `, ${r.already_retried} retried already` : "")
        + (r.refused ? `, ${r.refused} cannot be retried` : "") + (r.more ? "; more match: retry again" : ""),
    },
    purge: {
      path: "/bulk/purge",
      title: "Purge finished tasks",
      hint: "Purge deletes finished tasks only: running and pending tasks are never deleted.",
      counted: (n) => `${plural(n, "finished task")} match and will be deleted from the shared history, on every instance. This cannot be undone.`,
      confirm: (n) => `Delete ${plural(n, "task")}`,
      body: () => ({ confirm: true }),
      done: (r) => `Purged ${plural(r.purged, "task")}` + (r.more ? "; more match: purge again" : ""),
    },
  };

  let pending = null; // { kind, body, matched }
  // Where the last bulk retry stopped (more matched): the next one with the same filters goes
  // on from there instead of going through the tasks it retried again.
  let resume = null; // { key, cursor }

  async function openBulk(kind) {
    const action = ACTIONS[kind];
    const body = currentFilters();
    const dialog = $("bulk-dialog");
    const confirm = $("bulk-confirm");
    pending = null;
    $("bulk-title").textContent = action.title;
    $("bulk-filters").textContent = describe(body);
    const ignored = $("f-instance").value.trim() || $("f-id").value.trim();
    $("bulk-note").hidden = !ignored;
    $("bulk-note").textContent = ignored ? "The instance and task id filters do not apply to bulk actions." : "";
    $("bulk-count").textContent = "Counting…";
    confirm.disabled = true;
    confirm.textContent = action.confirm(0);
    dialog.dataset.kind = kind;
    if (!dialog.open) dialog.showModal();
    const response = await api(action.path, { method: "POST", body: JSON.stringify({ ...body, dry_run: true }) });
    if (!dialog.open || dialog.dataset.kind !== kind) return;
    if (!response.ok) {
      // The server says which filters it takes (422): e.g. a status the action does not apply to.
      const detail = await detailOf(response);
      $("bulk-count").textContent = response.status === 422 ? `${action.hint} ${detail}` : detail;
      return;
    }
    const { matched } = await response.json();
    $("bulk-count").textContent = action.counted(matched);
    confirm.textContent = action.confirm(matched);
    confirm.disabled = matched === 0;
    pending = { kind, body, matched };
  }

  async function confirmBulk() {
    if (!pending) return;
    const { kind, body } = pending;
    const action = ACTIONS[kind];
    pending = null;
    $("bulk-confirm").disabled = true;
    const key = JSON.stringify(body);
    const cursor = kind === "retry" && resume && resume.key === key ? { cursor: resume.cursor } : {};
    const response = await api(action.path, {
      method: "POST", body: JSON.stringify({ ...body, ...action.body(), ...cursor }),
    });
    $("bulk-dialog").close();
    if (!response.ok) {
      toast(await detailOf(response), "error");
      return;
    }
    const result = await response.json();
    if (kind === "retry") resume = result.next_cursor ? { key, cursor: result.next_cursor } : null;
    toast(action.done(result));
    document.dispatchEvent(new Event("taskflow:refresh"));
    if (!$("audit").hidden) loadAudit(true);
  }

  // ---- the audit trail ----------------------------------------------------------------------

  const audit = { before: null, loading: false };

  function fmtWhen(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString([], { hour12: false });
  }

  function auditRow(item) {
    return h("tr", null,
      h("td", { class: "muted nowrap", title: item.at, text: fmtWhen(item.at) }),
      h("td", null, h("span", { class: "action", text: item.action })),
      h("td", { class: "target", text: item.target }),
      h("td", { class: "mono small", text: item.actor }),
      h("td", { class: "mono small", text: item.client }),
      h("td", { class: "mono small muted", text: item.instance_id }));
  }

  async function loadAudit(fresh) {
    if (audit.loading) return;
    audit.loading = true;
    try {
      const params = new URLSearchParams({ limit: "50" });
      if (!fresh && audit.before) params.set("before", audit.before);
      const response = await api(`/audit?${params}`);
      if (!response.ok) {
        toast(await detailOf(response), "error");
        return;
      }
      const body = await response.json();
      const rows = body.items.map(auditRow);
      if (fresh) $("audit-rows").replaceChildren(...rows);
      else $("audit-rows").append(...rows);
      if (!$("audit-rows").children.length) {
        $("audit-rows").append(h("tr", { class: "empty" }, h("td", { colspan: "6", text: "No admin actions yet." })));
      }
      audit.before = body.next_before;
      $("audit-older").hidden = !body.next_before;
    } finally {
      audit.loading = false;
    }
  }

  function openAudit() {
    if (!$("detail").hidden) $("detail-close").click(); // one drawer at a time
    $("audit").hidden = false;
    loadAudit(true);
  }

  // ---- wiring -------------------------------------------------------------------------------

  $("bulk-retry").addEventListener("click", () => openBulk("retry"));
  $("bulk-purge").addEventListener("click", () => openBulk("purge"));
  $("bulk-confirm").addEventListener("click", confirmBulk);
  $("bulk-cancel").addEventListener("click", () => { pending = null; $("bulk-dialog").close(); });
  $("bulk-dialog").addEventListener("close", () => { pending = null; });
  $("audit-open").addEventListener("click", openAudit);
  $("audit-close").addEventListener("click", () => { $("audit").hidden = true; });
  $("audit-refresh").addEventListener("click", () => loadAudit(true));
  $("audit-older").addEventListener("click", () => loadAudit(false));
  $("rows").addEventListener("click", () => { $("audit").hidden = true; }); // the task's detail opens
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("bulk-dialog").open) $("audit").hidden = true;
  });
})();
