// Live refresh and the page's keyboard and small-screen behaviour.
//
// Every few seconds the page is fetched again and its <main id="live"> is morphed
// into the fresh one node by node, rather than swapped wholesale: a swap would drop
// the focused button, the text selection, an opened <details> and whatever someone
// typed. Rows keep their identity through their key (id, data-alert, data-device …),
// so a focused "Acknowledge" stays on its own alert when a new alert lands above it.
// What changed is said in a polite live region, and the refresh can be paused
// (WCAG 2.2.2); it pauses by itself while someone is filling in a form.
(function () {
  "use strict";

  // Small screens: the navigation collapses behind a button once this script runs
  // (without it the links simply wrap, so nothing is ever out of reach).
  const header = document.querySelector("header.top");
  const toggle = document.getElementById("nav-toggle");
  const nav = document.getElementById("site-nav");
  // Say which page this is in the navigation, to screen readers and by its look.
  if (nav) {
    for (const link of nav.querySelectorAll("a[href]")) {
      if (link.getAttribute("href") === window.location.pathname) link.setAttribute("aria-current", "page");
    }
  }
  if (header && toggle && nav) {
    header.classList.add("collapsible");
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      header.classList.toggle("nav-open", open);
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && header.classList.contains("nav-open")) {
        toggle.setAttribute("aria-expanded", "false");
        header.classList.remove("nav-open");
        if (nav.contains(document.activeElement)) toggle.focus();
      }
    });
  }

  // A printed page carries everything: folded <details> open for the print and
  // close again after it.
  let openedForPrint = [];
  window.addEventListener("beforeprint", function () {
    openedForPrint = Array.from(document.querySelectorAll("details:not([open])"));
    for (const details of openedForPrint) details.open = true;
  });
  window.addEventListener("afterprint", function () {
    for (const details of openedForPrint) details.open = false;
    openedForPrint = [];
  });

  // A table wider than the screen scrolls in its own box; one with no link or button
  // inside could not be scrolled from the keyboard, so it takes the focus itself.
  const FOCUSABLE = "a[href], button, input, select, textarea, [tabindex]";
  function reachableScrollers() {
    for (const table of document.querySelectorAll("table.grid")) {
      const scrolls = table.scrollWidth > table.clientWidth + 1;
      if (scrolls && !table.querySelector(FOCUSABLE)) table.setAttribute("tabindex", "0");
      else if (!scrolls && table.getAttribute("tabindex") === "0") table.removeAttribute("tabindex");
    }
  }
  reachableScrollers();
  window.addEventListener("resize", reachableScrollers);

  const KEY_ATTRIBUTES = ["id", "data-key", "data-alert", "data-device", "data-session",
    "data-command", "data-layer", "data-fingerprint", "data-testid"];
  const FIELD = "input:not([type=hidden]), select, textarea";
  const NOUNS = { "data-alert": "alert", "data-device": "device", "data-session": "session" };
  // The morph on its own, so a browser test can put it through cases the seeded
  // pages do not happen to show (reordered rows, an opened <details>, a selection).
  window.corelineMorph = morphKeepingFocus;

  const main = document.getElementById("live");
  const seconds = main && Number(main.dataset.refresh);
  if (!seconds) return;

  const bar = document.getElementById("live-bar");
  const pauseButton = document.getElementById("live-pause");
  const state = document.getElementById("live-state");
  const announcer = document.getElementById("announcer");
  let paused = false;
  let lastHtml = null;

  function keyOf(node) {
    if (node.nodeType !== Node.ELEMENT_NODE) return null;
    for (const name of KEY_ATTRIBUTES) {
      const value = node.getAttribute(name);
      if (value) return node.tagName + "|" + name + "=" + value;
    }
    return null;
  }

  // Keys that occur once among the children: a repeated key (the same data-testid on
  // every row's form) identifies nothing, so those children match by position.
  function uniqueKeys(parent) {
    const seen = new Map();
    for (const child of parent.childNodes) {
      const key = keyOf(child);
      if (key !== null) seen.set(key, seen.has(key) ? null : child);
    }
    for (const [key, child] of seen) if (child === null) seen.delete(key);
    return seen;
  }

  function morphAttributes(old, fresh) {
    for (const { name } of Array.from(old.attributes)) {
      // An opened <details> stays open: the reader opened it, the server cannot know.
      if (old.tagName === "DETAILS" && name === "open") continue;
      if (!fresh.hasAttribute(name)) old.removeAttribute(name);
    }
    for (const { name, value } of Array.from(fresh.attributes)) {
      if (old.tagName === "DETAILS" && name === "open") continue;
      // Setting value/checked attributes changes only the default of a field someone
      // edited, never what they typed or ticked.
      if (old.getAttribute(name) !== value) old.setAttribute(name, value);
    }
  }

  function sameKind(old, fresh) {
    return old.nodeType === fresh.nodeType &&
      (old.nodeType !== Node.ELEMENT_NODE || old.tagName === fresh.tagName);
  }

  function morphNode(old, fresh) {
    if (old.nodeType !== Node.ELEMENT_NODE) {
      if (old.nodeValue !== fresh.nodeValue) old.nodeValue = fresh.nodeValue;
      return;
    }
    morphAttributes(old, fresh);
    // A field's text is its live value once someone typed: leave it be.
    if (old.tagName === "TEXTAREA" && old.value !== old.defaultValue) return;
    morphChildren(old, fresh);
  }

  function morphChildren(oldParent, freshParent) {
    const oldKeyed = uniqueKeys(oldParent);
    const freshKeyed = uniqueKeys(freshParent);
    let cursor = oldParent.firstChild;
    for (const fresh of Array.from(freshParent.childNodes)) {
      const key = freshKeyed.has(keyOf(fresh)) ? keyOf(fresh) : null;
      const match = key === null ? null : oldKeyed.get(key);
      if (match) {
        // Old children before the match that the fresh page no longer has go now, so
        // the match need not move (moving a node drops the focus inside it).
        while (cursor && cursor !== match && !freshKeyed.has(keyOf(cursor))) {
          const gone = cursor;
          cursor = cursor.nextSibling;
          gone.remove();
        }
        if (cursor === match) cursor = cursor.nextSibling;
        else oldParent.insertBefore(match, cursor);
        oldKeyed.delete(key);
        morphNode(match, fresh);
        continue;
      }
      if (key === null && cursor && sameKind(cursor, fresh) && !oldKeyed.has(keyOf(cursor))) {
        const old = cursor;
        cursor = cursor.nextSibling;
        morphNode(old, fresh);
        continue;
      }
      oldParent.insertBefore(document.importNode(fresh, true), cursor);
    }
    while (cursor) {
      const gone = cursor;
      cursor = cursor.nextSibling;
      gone.remove();
    }
    for (const left of oldKeyed.values()) if (left.parentNode === oldParent) left.remove();
  }

  // What a reader should hear about: rows that arrived, alerts that changed state,
  // and tiles whose counts moved.
  function facts(root) {
    const rows = new Map();
    for (const name of Object.keys(NOUNS)) {
      for (const row of root.querySelectorAll("tr[" + name + "]")) {
        rows.set(name + "=" + row.getAttribute(name), row.dataset.status || "");
      }
    }
    const counts = new Map();
    for (const tile of root.querySelectorAll(".tile")) {
      const count = tile.querySelector(".count");
      const label = Array.from(tile.children).filter((child) => child !== count)
        .map((child) => child.textContent.trim()).join(" ");
      if (count && label) counts.set(label, count.textContent.trim());
    }
    return { rows, counts };
  }

  function plural(count, noun) {
    return count + " " + noun + (count === 1 ? "" : "s");
  }

  function describe(before, after) {
    const parts = [];
    for (const [name, noun] of Object.entries(NOUNS)) {
      let added = 0;
      let changed = 0;
      let removed = 0;
      for (const key of before.rows.keys()) {
        if (key.startsWith(name + "=") && !after.rows.has(key)) removed += 1;
      }
      for (const [key, status] of after.rows) {
        if (!key.startsWith(name + "=")) continue;
        if (!before.rows.has(key)) added += 1;
        else if (before.rows.get(key) !== status) changed += 1;
      }
      if (added) parts.push(plural(added, "new " + noun));
      if (changed) parts.push(plural(changed, noun) + " changed");
      if (removed) parts.push(plural(removed, noun) + " removed");
    }
    const moved = [];
    for (const [label, count] of after.counts) {
      if (before.counts.has(label) && before.counts.get(label) !== count) {
        moved.push(label + " " + count);
      }
    }
    if (moved.length) parts.push("counts changed: " + moved.join(", "));
    return parts.join("; ");
  }

  function announce(text) {
    if (!announcer || !text) return;
    // Clear first so the same words twice in a row are still spoken.
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 50);
  }

  function keepFocus(active, selection) {
    if (!active || active === document.body || document.activeElement === active) return;
    if (!active.isConnected) return;
    active.focus({ preventScroll: true });
    if (selection && typeof active.setSelectionRange === "function") {
      try {
        active.setSelectionRange(selection[0], selection[1]);
      } catch (error) {
        // Fields without a text selection (checkboxes …) have nothing to restore.
      }
    }
  }

  // A focused element the morph had to move (rows reordered) lost the focus on the
  // way: give it back, with the caret or selection it had.
  function morphKeepingFocus(oldParent, freshParent) {
    const active = document.activeElement;
    const selection = active && "selectionStart" in active && active.selectionStart !== null
      ? [active.selectionStart, active.selectionEnd] : null;
    morphChildren(oldParent, freshParent);
    keepFocus(active, selection);
  }

  // Someone filling in a form in the page: a refresh now could move the form away.
  function editing() {
    const active = document.activeElement;
    if (active && main.contains(active) && active.matches(FIELD)) return true;
    for (const field of main.querySelectorAll(FIELD)) {
      if (field.type === "checkbox" || field.type === "radio") {
        if (field.checked !== field.defaultChecked) return true;
      } else if (field.tagName === "SELECT") {
        for (const option of field.options) if (option.selected !== option.defaultSelected) return true;
      } else if (field.value !== field.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function showState() {
    if (!state) return;
    const stamp = document.querySelector("footer time");
    const when = stamp ? stamp.textContent : "";
    if (paused) state.textContent = "Updates paused · last updated " + when;
    else if (editing()) state.textContent = "Updates wait while you edit · updated " + when;
    else state.textContent = "Updated " + when;
  }

  async function refresh() {
    if (paused || editing() || document.hidden) {
      showState();
      return;
    }
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin" });
      if (!response.ok || response.redirected) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("live");
      const stamp = page.querySelector("footer time");
      // The reader may have started typing or paused while the page was on its way:
      // then neither the content nor its time changes.
      if (!fresh || paused || editing()) return;
      if (stamp) document.querySelector("footer time").replaceWith(document.importNode(stamp, true));
      if (fresh.innerHTML !== lastHtml) {
        const before = facts(main);
        morphKeepingFocus(main, fresh);
        lastHtml = fresh.innerHTML;
        reachableScrollers();
        announce(describe(before, facts(main)));
      }
    } catch (error) {
      // Offline for a moment: the next tick tries again.
    } finally {
      showState();
    }
  }

  if (bar && pauseButton) {
    bar.hidden = false;
    pauseButton.addEventListener("click", function () {
      paused = !paused;
      pauseButton.textContent = paused ? "Resume updates" : "Pause updates";
      showState();
      if (!paused) refresh();
    });
  }
  main.addEventListener("input", showState);
  main.addEventListener("focusin", showState);
  main.addEventListener("focusout", function () { window.setTimeout(showState, 0); });
  showState();
  window.setInterval(refresh, seconds * 1000);
})();
