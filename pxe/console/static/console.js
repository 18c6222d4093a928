// metalstream console: refresh the page's live parts by polling the service (no framework, nothing
// from another host). The service renders each part as escaped HTML; this script only swaps it in.
"use strict";

const POLL_MS = 2000;

function showTimes(root) {
  for (const el of root.querySelectorAll(".when[data-time]")) {
    const seconds = Number(el.dataset.time);
    if (!Number.isFinite(seconds) || seconds <= 0) continue;
    const when = new Date(seconds * 1000);
    if (el.tagName === "A") el.title = when.toLocaleString();
    else el.textContent = when.toLocaleString();
  }
}

function status(text) {
  const el = document.getElementById("live-status");
  if (el) el.textContent = text;
}

function watch(region) {
  const url = region.dataset.live;
  let stopped = region.dataset.final === "1";
  async function poll() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const response = await fetch(url, {credentials: "same-origin", cache: "no-store",
                                           headers: {"Accept": "text/html"}});
        if (response.status === 401) {
          window.location.assign("/console/sign-in?next=" + encodeURIComponent(window.location.pathname + window.location.search));
          return;
        }
        const body = await response.text();
        if (response.ok) {
          region.innerHTML = body;
          showTimes(region);
          region.dispatchEvent(new CustomEvent("console:updated", {bubbles: true}));
          status("updated " + new Date().toLocaleTimeString());
          if (response.headers.get("X-Console-Final") === "1") {
            stopped = true;
            status("finished; no more updates");
          }
        } else {
          status("the service answered " + response.status + ": " + body.slice(0, 200));
        }
      } catch (err) {
        status("cannot reach the service (" + err + "); retrying");
      }
    }
    setTimeout(poll, POLL_MS);
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) event.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  showTimes(document);
  for (const region of document.querySelectorAll("[data-live]")) watch(region);
});
