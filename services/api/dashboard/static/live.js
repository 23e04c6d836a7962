// Live refresh: every few seconds, fetch this page again and swap its <main> in,
// unless the user is typing in a form there (their input would be lost).
(function () {
  "use strict";
  const main = document.getElementById("live");
  const seconds = main && Number(main.dataset.refresh);
  if (!seconds) return;
  async function refresh() {
    const active = document.activeElement;
    if (active && main.contains(active) && active.tagName === "INPUT" && active.value) return;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok || response.redirected) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("live");
      const stamp = page.querySelector("footer time");
      if (fresh) main.innerHTML = fresh.innerHTML;
      if (stamp) document.querySelector("footer time").replaceWith(stamp);
    } catch (error) {
      // Offline for a moment: the next tick tries again.
    }
  }
  window.setInterval(refresh, seconds * 1000);
})();
