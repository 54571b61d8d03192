// taskflow dashboard: task controls (cancel). Loaded before app.js, which calls the hooks
// below when it draws a row or the detail panel and hands over its helpers (`ui`).
//
// Safety as in app.js: server values reach the page through textContent and attributes only.
"use strict";

window.taskflowControls = (() => {
  const LIVE = new Set(["pending", "running"]);
  const $ = (id) => document.getElementById(id);

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

  return {
    // A Cancel button at the end of pending and running rows (in the widest cell, the error's).
    row(rec, tr, ui) {
      if (!LIVE.has(rec.status)) return;
      const button = ui.h("button", {
        type: "button", class: "ghost row-cancel", "data-cancel": rec.task_id, title: "Cancel this task", text: "Cancel",
      });
      tr.lastChild.prepend(button);
    },

    // The drawer's Cancel button: shown for pending and running tasks.
    detail(rec, body, ui) {
      const button = $("cancel");
      button.hidden = !LIVE.has(rec.status);
      button.disabled = false;
      button.dataset.id = rec.task_id;
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
    },
  };
})();
