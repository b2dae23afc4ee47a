"use strict";
(async () => {
  const C = Console;
  if (!await C.loadSession("supervisor")) return;
  let next = null;

  function params() {
    const p = new URLSearchParams();
    const from = document.getElementById("f-from").value;
    const to = document.getElementById("f-to").value;
    if (from) p.set("from", String(new Date(from).getTime()));
    if (to) p.set("to", String(new Date(to).getTime()));
    const reason = document.getElementById("f-reason").value;
    if (reason) p.set("reason", reason);
    const queue = document.getElementById("f-queue").value.trim();
    if (queue) p.set("queue", queue);
    p.set("verified", document.getElementById("f-verified").value);
    return p;
  }

  function exportLinks() {
    const p = params();
    p.set("format", "csv");
    document.getElementById("export-csv").href = "/api/cdr/export?" + p;
    p.set("format", "json");
    document.getElementById("export-json").href = "/api/cdr/export?" + p;
  }

  async function load(after) {
    const p = params();
    p.set("limit", "50");
    if (after) p.set("after", after);
    C.text("cdr-status", "查询中…");
    const r = await fetch("/api/cdr?" + p, { credentials: "same-origin" });
    if (!r.ok) { C.text("cdr-status", "查询失败"); return; }
    const d = await r.json();
    next = d.next;
    document.getElementById("next-page").disabled = !next;
    C.text("cdr-status", `本页 ${C.num(d.rows.length)} 条`);
    document.getElementById("cdr-rows").replaceChildren(...d.rows.map(row => {
      const btn = C.el("button", { type: "button", "aria-label": `查看通话 ${row.id} 的内容` }, "查看");
      btn.addEventListener("click", () => transcript(row.id));
      return C.el("tr", {},
        C.el("td", {}, C.time(row.started_at_ms)), C.el("td", {}, row.caller_masked),
        C.el("td", {}, C.END[row.end_reason] || row.end_reason),
        C.el("td", {}, row.verified ? "已验证" : "未验证"), C.el("td", {}, row.queue || "—"),
        C.el("td", { class: "num" }, C.dur((row.ended_at_ms - row.started_at_ms) / 1000)),
        C.el("td", {}, btn));
    }));
    exportLinks();
  }

  async function transcript(id) {
    const r = await fetch("/api/cdr/" + id, { credentials: "same-origin" });
    if (!r.ok) return;
    const t = await r.json();
    document.getElementById("transcript").hidden = false;
    C.text("t-head", `${C.time(t.call.started_at_ms)} · ${t.call.caller_masked} · ${C.END[t.call.end_reason] || t.call.end_reason}`);
    document.getElementById("t-prompts").replaceChildren(...t.prompts.map(p => C.el("li", {}, p)));
    C.text("t-states", t.states.join(" → "));
    document.getElementById("h-transcript").focus();
  }

  document.getElementById("h-transcript").setAttribute("tabindex", "-1");
  document.getElementById("filters").addEventListener("submit", (ev) => { ev.preventDefault(); load(null); });
  document.getElementById("first-page").addEventListener("click", () => load(null));
  document.getElementById("next-page").addEventListener("click", () => next && load(next));
  load(null);
})();
