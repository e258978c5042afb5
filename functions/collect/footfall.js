/*! footfall.js: a small, dependency-free browser tracker for Footfall (Segment-compatible). */
(function (window, document) {
  "use strict";
  var VERSION = "1.0.0";
  var MAX_BATCH = 20, FLUSH_MS = 1000, MAX_QUEUE = 500, MAX_BACKOFF_MS = 60000, YEAR = 31536000;
  var STORE = "footfall.queue", ID_KEY = "ff_aid", USER_KEY = "ff_uid";
  var script = document.currentScript || document.querySelector("script[data-write-key]") || {};
  var data = function (name) { return script.getAttribute ? script.getAttribute("data-" + name) : null; };
  var config = {
    writeKey: data("write-key") || "",
    host: (data("host") || (script.src ? new URL(script.src, location.href).origin : "")).replace(/\/$/, ""),
    autoPage: data("auto-page") !== "false",
    requireConsent: data("require-consent") === "true"
  };
  var queue = [], timer = null, backoff = 0, sending = false, consent = !config.requireConsent;

  function safe(fn) {
    // Never throw into the host page.
    return function () { try { return fn.apply(null, arguments); } catch (e) { return undefined; } };
  }
  function tracking() {
    var dnt = navigator.doNotTrack || window.doNotTrack || navigator.msDoNotTrack;
    return consent && dnt !== "1" && dnt !== "yes" && config.writeKey !== "";
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = Math.random() * 16 | 0; return (c === "x" ? r : (r & 3 | 8)).toString(16);
    });
  }
  function readCookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : null;
  }
  function remember(name, value) {
    // First-party cookie (survives across subdomain pages) with localStorage as a fallback.
    try { document.cookie = name + "=" + encodeURIComponent(value) + "; max-age=" + YEAR + "; path=/; SameSite=Lax"; } catch (e) { /* blocked */ }
    try { localStorage.setItem(name, value); } catch (e) { /* blocked */ }
  }
  function recall(name) {
    var value = readCookie(name);
    if (!value) { try { value = localStorage.getItem(name); } catch (e) { value = null; } }
    return value;
  }
  function anonymousId() {
    var id = recall(ID_KEY);
    if (!id) { id = uuid(); remember(ID_KEY, id); }
    return id;
  }
  function campaign() {
    var params = new URLSearchParams(location.search), found = {}, any = false;
    ["source", "medium", "name", "term", "content"].forEach(function (key) {
      var value = params.get("utm_" + (key === "name" ? "campaign" : key));
      if (value) { found[key] = value; any = true; }
    });
    return any ? found : null;
  }
  function page() {
    return { path: location.pathname, referrer: document.referrer, search: location.search, title: document.title, url: location.href };
  }
  function context() {
    var ctx = { library: { name: "footfall.js", version: VERSION }, page: page(), userAgent: navigator.userAgent,
                locale: navigator.language };
    try { ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* old browser */ }
    var utm = campaign();
    if (utm) { ctx.campaign = utm; }
    return ctx;
  }
  function persist() {
    try { localStorage.setItem(STORE, JSON.stringify(queue.slice(-MAX_QUEUE))); } catch (e) { /* full or blocked */ }
  }
  function enqueue(type, fields) {
    if (!tracking()) { return; }
    var event = { type: type, messageId: uuid(), timestamp: new Date().toISOString(), anonymousId: anonymousId(), context: context() };
    var user = recall(USER_KEY);
    if (user) { event.userId = user; }
    for (var key in fields) { if (fields[key] !== undefined) { event[key] = fields[key]; } }
    JSON.stringify(event);  // throws (and the call is dropped, quietly) for what cannot be sent, e.g. cycles
    queue.push(event);
    if (queue.length > MAX_QUEUE) { queue.shift(); }
    persist();
    schedule(queue.length >= MAX_BATCH ? 0 : FLUSH_MS);
  }
  function schedule(delay) {
    if (timer === null) { timer = setTimeout(safe(function () { timer = null; flush(); }), delay); }
  }
  function body(batch) {
    // writeKey in the body and text/plain: a "simple" cross-origin request, no CORS preflight needed.
    return JSON.stringify({ batch: batch, writeKey: config.writeKey, sentAt: new Date().toISOString() });
  }
  function flush() {
    if (sending || queue.length === 0) { return; }
    if (navigator.onLine === false) { return; }  // the "online" event flushes again
    var batch = queue.slice(0, MAX_BATCH);
    sending = true;
    fetch(config.host + "/v1/batch", { method: "POST", body: body(batch), keepalive: true,
                                       headers: { "Content-Type": "text/plain" }, credentials: "omit" })
      .then(function (response) {
        // 4xx (other than 429) will not get better by retrying: the collector kept those as failed events.
        if (response.status >= 500 || response.status === 429) { throw new Error("retry"); }
        queue.splice(0, batch.length); persist(); backoff = 0;
      })
      .catch(function () { backoff = Math.min(MAX_BACKOFF_MS, backoff ? backoff * 2 : 1000); })
      .then(function () {
        sending = false;
        if (queue.length) { schedule(backoff || 0); }
      });
  }
  function beacon() {
    // The page is going away: hand what is queued to the browser, which sends it after the page is gone. The
    // events stay in storage until a send is confirmed: the next page sends them again, and the collector's
    // de-duplication by messageId stores them once either way.
    if (queue.length === 0 || !tracking()) { return; }
    var payload = body(queue.slice(0, MAX_BATCH * 5)), sent = false;
    if (navigator.sendBeacon) {
      try { sent = navigator.sendBeacon(config.host + "/v1/batch", new Blob([payload], { type: "text/plain" })); } catch (e) { sent = false; }
    }
    if (!sent) {
      try { fetch(config.host + "/v1/batch", { method: "POST", body: payload, keepalive: true, headers: { "Content-Type": "text/plain" }, credentials: "omit" }); } catch (e) { /* sent again next time */ }
    }
  }

  var api = {
    VERSION: VERSION,
    page: safe(function (name, properties) {
      enqueue("page", { name: typeof name === "string" ? name : undefined, properties: Object.assign(page(), typeof name === "object" ? name : properties || {}) });
    }),
    track: safe(function (event, properties) {
      if (typeof event === "string" && event) { enqueue("track", { event: event, properties: properties || {} }); }
    }),
    identify: safe(function (userId, traits) {
      if (userId) { remember(USER_KEY, String(userId)); }
      enqueue("identify", { traits: traits || {} });
    }),
    consent: safe(function (granted) { consent = !!granted; if (!consent) { queue = []; persist(); } }),
    reset: safe(function () { remember(USER_KEY, ""); remember(ID_KEY, uuid()); }),
    flush: safe(flush)
  };

  safe(function () {
    try { queue = JSON.parse(localStorage.getItem(STORE) || "[]"); } catch (e) { queue = []; }
    var pending = Array.isArray(window.footfall) ? window.footfall : [];  // calls made before this script loaded
    window.footfall = api;
    pending.forEach(function (call) { if (api[call[0]]) { api[call[0]].apply(null, call.slice(1)); } });
    if (config.autoPage) { api.page(); }
    window.addEventListener("online", function () { backoff = 0; flush(); });
    document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") { beacon(); } });
    window.addEventListener("pagehide", beacon);
    if (queue.length) { schedule(0); }
  })();
})(window, document);
