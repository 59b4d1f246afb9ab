// Spillway dashboard: follows a running attempt's log on the task page. The log is the task's
// own output: it is only ever added as text, never as HTML.
"use strict";
(function () {
  document.querySelectorAll("pre[data-live-log]").forEach((pre) => {
    const status = document.getElementById(pre.dataset.status);
    const say = (text) => { if (status) status.textContent = text; };
    const source = new EventSource(pre.dataset.liveLog);
    // Every (re)connection sends the log from its start.
    source.addEventListener("open", () => { pre.textContent = ""; say("live"); });
    source.addEventListener("log", (event) => {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(document.createTextNode(JSON.parse(event.data).text));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", (event) => {
      source.close();
      say("ended: " + JSON.parse(event.data).outcome);
      pre.dataset.ended = "true";
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) say("disconnected; reload the page");
      else say("reconnecting…");
    });
  });
})();
