// Spillway dashboard: applies live updates from one server-sent event stream per page.
// Pages work without it; it only keeps numbers current without reloading.
"use strict";
// "Go back" links on error pages (an inline javascript: URL would break the CSP).
document.querySelectorAll("a[data-back]").forEach((a) => {
  a.addEventListener("click", (event) => {
    if (history.length > 1) {
      event.preventDefault();
      history.back();
    }
  });
});
(function () {
  const jobs = Array.from(document.querySelectorAll("[data-job]"), (el) => el.dataset.job);
  const queues = document.querySelector("[data-live=queues]") !== null;
  const pools = document.querySelector("[data-live=pools]") !== null;
  if (jobs.length === 0 && !queues && !pools) return;
  const params = new URLSearchParams();
  if (jobs.length) params.set("jobs", Array.from(new Set(jobs)).join(","));
  if (queues) params.set("queues", "1");
  if (pools) params.set("pools", "1");
  const live = document.querySelector("p.live");
  const fragment = document.querySelector("tbody[data-fragment]");
  const card = document.querySelector("[data-live=job]");
  let lastFinished = card ? card.dataset.counts : null;
  let refreshing = false;
  let pending = false;

  function say(text) {
    if (!live) return;
    live.hidden = !text;
    live.textContent = text || "";
  }

  function setField(root, name, value) {
    root.querySelectorAll('[data-field="' + name + '"]').forEach((el) => { el.textContent = String(value); });
  }

  function setState(root, state) {
    root.querySelectorAll('[data-field="state"]').forEach((el) => {
      el.textContent = state;
      el.className = "badge s-" + state;
    });
  }

  function setProgress(root, job) {
    const total = Math.max(job.task_count, 1);
    root.querySelectorAll('[data-field="progress"]').forEach((bar) => {
      let x = 0;
      for (const part of ["succeeded", "dead", "cancelled", "leased"]) {
        const rect = bar.querySelector(".p-" + part);
        const width = (job.counts[part] || 0) * 100 / total;
        if (rect) {
          rect.setAttribute("x", x.toFixed(2));
          rect.setAttribute("width", width.toFixed(2));
        }
        x += width;
      }
      bar.setAttribute("aria-label", job.finished + " of " + job.task_count + " tasks finished");
    });
  }

  // Swap in fresh task rows, at most one request at a time.
  async function refreshTasks() {
    if (!fragment) return;
    if (refreshing) { pending = true; return; }
    refreshing = true;
    try {
      const resp = await fetch(fragment.dataset.fragment, { credentials: "same-origin" });
      if (resp.ok) fragment.innerHTML = await resp.text();
    } catch (e) { /* the next update tries again */ }
    refreshing = false;
    if (pending) { pending = false; refreshTasks(); }
  }

  function apply(notice) {
    for (const job of notice.jobs || []) {
      document.querySelectorAll('[data-job="' + CSS.escape(job.id) + '"]').forEach((row) => {
        setState(row, job.state);
        setProgress(row, job);
        setField(row, "finished", job.finished);
        setField(row, "dead", job.counts.dead);
        if (job.finished_at) setField(row, "finished_at", job.finished_at);
        if (["succeeded", "failed", "cancelled"].includes(job.state)) {
          row.querySelectorAll("[data-hide-when-final]").forEach((el) => { el.hidden = true; });
        }
        row.querySelectorAll("[data-count]").forEach((el) => {
          el.textContent = String(job.counts[el.dataset.count] || 0);
        });
        if (row.dataset.live === "job") {
          const key = JSON.stringify(job.counts);
          if (lastFinished !== null && lastFinished !== key) refreshTasks();
          lastFinished = key;
        }
      });
    }
    for (const q of notice.queues || []) {
      document.querySelectorAll('[data-queue="' + CSS.escape(q.key) + '"]').forEach((row) => {
        for (const f of ["waiting", "running", "succeeded", "dead"]) setField(row, f, q[f]);
        setField(row, "oldest", q.oldest || "–");
      });
    }
    for (const p of notice.pools || []) {
      document.querySelectorAll('[data-pool="' + CSS.escape(p.name) + '"]').forEach((row) => {
        setField(row, "desired", p.desired);
        setField(row, "actual", p.actual);
      });
    }
  }

  const source = new EventSource("/events?" + params.toString());
  source.addEventListener("update", (e) => {
    say("");
    try { apply(JSON.parse(e.data)); } catch (err) { /* ignore a malformed notice */ }
  });
  source.addEventListener("signed_out", () => {
    source.close();
    say("Your session ended (signed out or the server restarted). Reload to sign in again.");
  });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself; just tell the reader the numbers may be stale.
    if (source.readyState !== EventSource.CLOSED) say("Connection lost: reconnecting…");
  });
})();
