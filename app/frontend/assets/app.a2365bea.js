// aiinfra documents UI: no build step. Talks to the API under /api/ (same origin).
(function () {
  "use strict";
  var KEY_STORAGE = "aiinfra.apiKey";
  var state = { page: 1, size: 10 };
  var $ = function (id) { return document.getElementById(id); };

  function apiKey() { return $("api-key").value.trim(); }

  function show(el, text, isError) {
    el.textContent = text;
    el.className = isError ? "status error" : "status";
  }

  function request(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && apiKey()) headers["X-API-Key"] = apiKey();
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (resp) {
      if (resp.status === 204) return null;
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (!resp.ok) {
          var detail = data && data.detail;
          if (Array.isArray(detail)) {
            detail = detail.map(function (d) { return (d.loc || []).join(".") + ": " + d.msg; }).join("; ");
          }
          throw new Error(resp.status + " " + (detail || resp.statusText));
        }
        return data;
      });
    });
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function renderDocs(list) {
    var ul = $("docs");
    ul.replaceChildren();
    if (!list.items.length) ul.appendChild(el("li", "empty", "No documents yet."));
    list.items.forEach(function (d) {
      var li = el("li", "doc");
      li.appendChild(el("h3", null, d.title));
      var meta = el("p", "meta",
        (d.source ? d.source + " · " : "") + new Date(d.created_at).toLocaleString() +
        " · v" + d.version + (d.indexed ? " · indexed" : " · indexing…"));
      li.appendChild(meta);
      if (d.tags.length) {
        var tags = el("p", "tags");
        d.tags.forEach(function (t) { tags.appendChild(el("span", "tag", t)); });
        li.appendChild(tags);
      }
      if (d.body) li.appendChild(el("p", "body", d.body.slice(0, 300)));
      var del = el("button", "danger", "Delete");
      del.addEventListener("click", function () {
        request("DELETE", "/api/documents/" + d.id).then(loadDocs, function (e) {
          show($("list-status"), e.message, true);
        });
      });
      li.appendChild(del);
      ul.appendChild(li);
    });
    var pages = Math.max(1, Math.ceil(list.total / list.size));
    $("page-info").textContent = "Page " + list.page + " of " + pages + " (" + list.total + " documents)";
    $("prev").disabled = list.page <= 1;
    $("next").disabled = list.page >= pages;
  }

  function loadDocs() {
    show($("list-status"), "Loading…");
    return request("GET", "/api/documents?page=" + state.page + "&size=" + state.size)
      .then(function (list) { renderDocs(list); show($("list-status"), ""); })
      .catch(function (e) { show($("list-status"), e.message, true); });
  }

  function renderSearch(res) {
    var out = $("results");
    out.replaceChildren();
    out.appendChild(el("p", "meta", res.total + " hits (" + res.backend + ")"));
    res.hits.forEach(function (h) {
      out.appendChild(el("div", "hit", h.title + (h.tags.length ? "  [" + h.tags.join(", ") + "]" : "")));
    });
    Object.keys(res.facets).forEach(function (name) {
      if (!res.facets[name].length) return;
      out.appendChild(el("p", "facet", name + ": " + res.facets[name].map(function (f) {
        return f.value + " (" + f.count + ")";
      }).join(", ")));
    });
  }

  function init() {
    $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
    $("api-key").addEventListener("change", function () {
      localStorage.setItem(KEY_STORAGE, apiKey());
    });
    $("create-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var doc = {
        title: $("title").value,
        body: $("body").value,
        tags: $("tags").value.split(",").map(function (t) { return t.trim(); }).filter(Boolean)
      };
      if ($("source").value.trim()) doc.source = $("source").value.trim();
      request("POST", "/api/documents", doc).then(function (created) {
        show($("create-status"), "Created " + created.id);
        $("create-form").reset();
        state.page = 1;
        return loadDocs();
      }).catch(function (e) { show($("create-status"), e.message, true); });
    });
    $("search-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      request("GET", "/api/search?q=" + encodeURIComponent($("q").value) + "&size=10")
        .then(renderSearch)
        .catch(function (e) { show($("results"), e.message, true); });
    });
    $("prev").addEventListener("click", function () { state.page -= 1; loadDocs(); });
    $("next").addEventListener("click", function () { state.page += 1; loadDocs(); });
    $("refresh").addEventListener("click", loadDocs);
    request("GET", "/api/version").then(function (v) {
      $("version").textContent = "v" + v.version + " · release " + v.release;
    }).catch(function () { $("version").textContent = "API unreachable"; });
    loadDocs();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
