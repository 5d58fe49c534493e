// Lookalike shoppers' page: no framework, no build step.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), file = $("file"), preview = $("preview");
  const status = $("status"), results = $("results"), card = $("card");

  function params() {
    const p = new URLSearchParams();
    const add = (k, id) => { const v = $(id).value.trim(); if (v !== "") p.set(k, v); };
    add("category", "category"); add("brand", "brand");
    add("price_min", "price-min"); add("price_max", "price-max");
    add("in_stock", "in-stock"); add("top_k", "top-k");
    return p;
  }

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  // A stable random id per browser, sent with every query so that a canary
  // split keeps this shopper on one model (without it the gateway keys the
  // split on the IP address, which many shoppers can share).
  const clientID = (() => {
    try {
      let id = localStorage.getItem("lookalike-client-id");
      if (!id) {
        const b = crypto.getRandomValues(new Uint8Array(16)); // also in plain-http contexts
        id = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
        localStorage.setItem("lookalike-client-id", id);
      }
      return id;
    } catch (e) {
      return ""; // storage disabled: the gateway falls back to the IP
    }
  })();

  async function run(label, body, headers) {
    headers = Object.assign({}, headers);
    if (clientID) headers["Lookalike-Client-Id"] = clientID;
    say(label + "…");
    results.setAttribute("aria-busy", "true");
    try {
      const resp = await fetch("/v1/search?" + params().toString(), { method: "POST", body, headers });
      const data = await resp.json().catch(() => ({}));
      if (!resp.ok) {
        const e = data.error || {};
        say("Search failed: " + (e.message || resp.statusText) + (e.code ? " (" + e.code + ")" : ""), true);
        return;
      }
      render(data.results || []);
      say(label + ": " + (data.results || []).length + " results from model " + data.model);
    } catch (err) {
      say("Search failed: " + err, true);
    } finally {
      results.removeAttribute("aria-busy");
    }
  }

  function money(v) {
    return typeof v === "number" ? v.toFixed(2) : "";
  }

  function render(list) {
    results.replaceChildren();
    for (const r of list) {
      const md = r.metadata || {};
      const node = card.content.firstElementChild.cloneNode(true);
      node.dataset.sku = r.sku;
      const img = node.querySelector(".thumb");
      img.src = "/v1/products/" + encodeURIComponent(r.sku) + "/image";
      img.alt = md.title || r.sku;
      node.querySelector(".title").textContent = md.title || r.sku;
      node.querySelector(".price").textContent = money(md.price);
      node.querySelector(".score").textContent = "score " + r.score.toFixed(3);
      node.querySelector(".sku").textContent = r.sku;
      node.querySelector(".more").addEventListener("click", () => moreLike(r.sku, md.title || r.sku));
      results.appendChild(node);
    }
  }

  function searchFile(f) {
    if (!f) return;
    preview.src = URL.createObjectURL(f);
    preview.hidden = false;
    const fd = new FormData();
    fd.append("image", f, f.name);
    run("Photo " + f.name, fd);
  }

  function moreLike(sku, title) {
    run("More like " + title, JSON.stringify({ sku }), { "Content-Type": "application/json" });
  }

  file.addEventListener("change", () => searchFile(file.files[0]));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") file.click(); });
  for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => searchFile(e.dataTransfer.files[0]));
  $("url-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const u = $("url").value.trim();
    if (!u) return;
    preview.src = ""; preview.hidden = true;
    run("Image URL", JSON.stringify({ image_url: u }), { "Content-Type": "application/json" });
  });
})();
