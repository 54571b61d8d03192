// taskflow dashboard: task controls and what a task reports while it runs: the Cancel buttons,
// progress bars (row and detail) and the Logs tab of the detail panel. Loaded before app.js,
// which calls the hooks below when it draws a row or the detail panel and hands over its
// helpers (`ui`).
//
// Safety as in app.js: server values reach the page through textContent and attributes only.
"use strict";

window.taskflowControls = (() => {
  const LIVE = new Set(["pending", "running"]);
  const $ = (id) => document.getElementById(id);
  // The detail panel's open tab, kept while live updates redraw it.
  let tab = "details";
  let tabOf = null; // the task whose panel that tab belongs to
  // While the panel shows a live task, it is read again every second: another instance's
  // progress and log lines reach this one through the backend, not through its own events.
  let refresher = null;

  async function cancel(ui, id, button) {
    button.disabled = true;
    let response;
    try {
      response = await ui.api(`/${encodeURIComponent(id)}/cancel`, { method: "POST" });
    } catch (error) {
      button.disabled = false;
      if (error.message !== "login required") ui.toast("Cancel failed: no answer from the server", "error");
      return;
    }
    if (response.status === 202) {
      // The record turns cancelled on the stream once its instance has stopped it.
      ui.toast(`Cancelling task ${ui.shortId(id)}`);
    } else {
      button.disabled = false;
      ui.toast(await ui.detailOf(response), "error");
    }
  }

  function progressBar(ui, progress, cls) {
    const fraction = progress && typeof progress.fraction === "number" ? progress.fraction : null;
    const bar = ui.h("span", { class: `progress ${cls}`, role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-valuenow": fraction === null ? null : String(Math.round(fraction * 100)),
      title: progress ? `${fraction === null ? "" : `${Math.round(fraction * 100)}% `}${progress.message || ""}`.trim() : null },
    ui.h("span", { class: "progress-fill" }));
    bar.firstChild.style.width = `${Math.round((fraction ?? 0) * 100)}%`;
    bar.classList.toggle("unknown", fraction === null);
    return bar;
  }

  function logLine(ui, line) {
    const fields = line.fields && Object.keys(line.fields).length ? JSON.stringify(line.fields) : "";
    const at = typeof line.at === "number" ? new Date(line.at * 1000).toISOString() : null;
    return ui.h("tr", { class: `log ${line.level || "info"}` },
      ui.h("td", { class: "mono small muted", title: at, text: at ? ui.fmtTime(at) : "—" }),
      ui.h("td", null, ui.h("span", { class: `level ${line.level || "info"}`, text: line.level || "info" })),
      ui.h("td", { class: "log-message" }, ui.h("span", { text: line.message ?? "" }),
        fields ? ui.h("span", { class: "log-fields mono small", text: fields }) : null));
  }

  function logsPane(ui, rec) {
    const logs = Array.isArray(rec.logs) ? rec.logs : [];
    const pane = ui.h("div", { class: "logs-pane", id: "logs-pane" });
    if (rec.logs_dropped) {
      pane.append(ui.h("p", { class: "muted small", text: `${rec.logs_dropped} older line${rec.logs_dropped === 1 ? "" : "s"} dropped (the newest are kept)` }));
    }
    if (!logs.length) {
      pane.append(ui.h("p", { class: "muted", text: "No log lines: task_log() inside a task keeps them here." }));
      return pane;
    }
    pane.append(ui.h("table", { class: "grid compact logs" }, ui.h("tbody", null, ...logs.map((line) => logLine(ui, line)))));
    return pane;
  }

  function showTab(name) {
    tab = name;
    for (const button of document.querySelectorAll("#detail-tabs button")) {
      button.setAttribute("aria-selected", String(button.dataset.tab === name));
    }
    const details = $("details-pane");
    const logs = $("logs-pane");
    if (details) details.hidden = name !== "details";
    if (logs) logs.hidden = name !== "logs";
  }

  function keepFresh(ui, rec) {
    clearInterval(refresher);
    refresher = null;
    if (!LIVE.has(rec.status)) return;
    const id = rec.task_id;
    refresher = setInterval(async () => {
      if (ui.selected() !== id || $("detail").hidden) {
        clearInterval(refresher);
        refresher = null;
        return;
      }
      const response = await ui.api(`/${encodeURIComponent(id)}`);
      if (response.ok && ui.selected() === id) ui.renderDetail(await response.json());
    }, 1000);
  }

  return {
    // Live rows: a progress bar under the badge (when the task reports progress) and a
    // Cancel button at the end of the row (in the widest cell, the error's).
    row(rec, tr, ui) {
      if (!LIVE.has(rec.status)) return;
      if (rec.progress) tr.firstChild.append(progressBar(ui, rec.progress, "in-row"));
      const button = ui.h("button", {
        type: "button", class: "ghost row-cancel", "data-cancel": rec.task_id, title: "Cancel this task", text: "Cancel",
      });
      tr.lastChild.prepend(button);
    },

    // The detail panel: its Cancel button, the progress, and two tabs: Details and Logs.
    detail(rec, body, ui) {
      const button = $("cancel");
      button.hidden = !LIVE.has(rec.status);
      button.disabled = false;
      button.dataset.id = rec.task_id;

      const details = ui.h("div", { id: "details-pane" }, ...body.childNodes);
      const tags = Object.entries(rec.tags || {});
      const facts = details.querySelector("dl.facts");
      if (tags.length && facts) {
        facts.append(ui.h("dt", { text: "Tags" }), ui.h("dd", { class: "tags" },
          ...tags.map(([key, value]) => ui.h("span", { class: "tag", "data-tag": `${key}:${value}`, text: `${key}: ${value}` }))));
      }
      if (rec.progress) {
        const text = rec.progress.message || "";
        const share = typeof rec.progress.fraction === "number" ? `${Math.round(rec.progress.fraction * 100)}%` : "";
        details.insertBefore(ui.h("div", { class: "detail-progress", id: "detail-progress" },
          progressBar(ui, rec.progress, "in-detail"),
          ui.h("span", { class: "progress-text", text: [share, text].filter(Boolean).join(" · ") })), details.children[1] || null);
      }
      const count = rec.log_count ?? (Array.isArray(rec.logs) ? rec.logs.length : 0);
      const tabs = ui.h("div", { class: "tabs", id: "detail-tabs", role: "tablist" },
        ui.h("button", { type: "button", role: "tab", "data-tab": "details", text: "Details" }),
        ui.h("button", { type: "button", role: "tab", "data-tab": "logs", text: `Logs (${count})` }));
      body.replaceChildren(tabs, details, logsPane(ui, rec));
      if (tabOf !== rec.task_id) tab = "details"; // another task: start on its details
      tabOf = rec.task_id;
      showTab(tab);
      keepFresh(ui, rec);
    },

    wire(ui) {
      $("cancel").addEventListener("click", () => cancel(ui, $("cancel").dataset.id, $("cancel")));
      // Capture phase: the row's own click (open the detail) must not see this one.
      $("rows").addEventListener("click", (event) => {
        const button = event.target.closest("button[data-cancel]");
        if (!button) return;
        event.stopPropagation();
        cancel(ui, button.getAttribute("data-cancel"), button);
      }, true);
      $("detail-body").addEventListener("click", (event) => {
        const button = event.target.closest("#detail-tabs button[data-tab]");
        if (button) showTab(button.dataset.tab);
      });
    },
  };
})();
