// taskflow dashboard: the Schedules view (GET {base}/schedules), with Pause and Resume.
//
// Kept apart from app.js: it only needs app.js's API call (window.taskflowApi, with the page's
// base URL and CSRF token) and the #schedules section. Like app.js, every value from the server
// reaches the page through textContent or setAttribute, never innerHTML.
"use strict";

(() => {
  // Seconds between two refreshes: next and last runs move with every tick.
  const REFRESH_MS = 5000;
  const STATUS_LABEL = {
    scheduled: "Scheduled", pending: "Pending", running: "Running", success: "Succeeded",
    failed: "Failed", interrupted: "Interrupted", cancelled: "Cancelled",
  };

  const panel = document.getElementById("schedules");
  if (!panel) return;

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

  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

  const call = (path, method) => window.taskflowApi.api(path, { method }); // app.js


  function row(item) {
    const action = item.paused ? "resume" : "pause";
    const button = h("button", {
      type: "button",
      class: item.paused ? "primary" : "ghost",
      "data-schedule": item.name,
      "data-action": action,
      text: item.paused ? "Resume" : "Pause",
    });
    button.addEventListener("click", () => toggle(item.name, action, button));
    const status = item.last_status;
    return h(
      "tr",
      { class: item.paused ? "paused" : null, "data-schedule": item.name },
      h("td", { text: item.name }),
      h("td", { class: "mono", text: item.spec }),
      h("td", { class: "next-run", text: item.paused ? "paused" : when(item.next_run) }),
      h("td", { text: when(item.last_run) }),
      h("td", null, status ? h("span", { class: `badge ${status}`, text: STATUS_LABEL[status] || status }) : "–"),
      h("td", { class: "num" }, button),
    );
  }

  function render(items) {
    panel.hidden = items.length === 0;
    const table = h(
      "table",
      { class: "grid compact", id: "schedule-table" },
      h("thead", null, h("tr", null,
        h("th", { text: "Schedule" }), h("th", { text: "When" }), h("th", { text: "Next run" }),
        h("th", { text: "Last run" }), h("th", { text: "Last status" }), h("th", { class: "num", text: "" }))),
      h("tbody", null, ...items.map(row)),
    );
    panel.replaceChildren(
      h("div", { class: "panel-head" }, h("h2", { text: "Schedules" }),
        h("span", { class: "muted", text: `${items.length} periodic` })),
      table,
    );
  }

  async function refresh() {
    try {
      const response = await call("/schedules", "GET");
      if (response.ok) render((await response.json()).items || []);
    } catch {
      // The next refresh tries again; app.js reports a lost connection.
    }
  }

  async function toggle(name, action, button) {
    button.disabled = true;
    try {
      await call(`/schedules/${encodeURIComponent(name)}/${action}`, "POST");
    } finally {
      await refresh();
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
