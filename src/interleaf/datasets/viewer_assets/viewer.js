"use strict";
(function () {
  const data = JSON.parse(document.getElementById("run-data").textContent);
  const state = { seed: null, node: null };
  const scoreMax = Math.max(1, data.score_max || 3);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k.startsWith("data-")) e.dataset[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function fmt(n, digits) {
    if (n === null || n === undefined) return "–";
    return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits });
  }

  function meanScore(scores) {
    const vals = scores.map((s) => s.value).filter((v) => v !== null);
    return vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : null;
  }

  function renderHeader() {
    document.getElementById("run-title").textContent = data.title;
    document.getElementById("run-sub").textContent = data.subtitle;
    const t = data.totals;
    const stats = [
      ["seeds", fmt(t.seeds)], ["done", fmt(t.done)], ["seeds failed", fmt(t.failed)], ["model requests", fmt(t.calls)],
      ["from cache", fmt(t.cached_calls)], ["pending", fmt(t.pending)],
      ["tokens", fmt(t.prompt_tokens + t.completion_tokens)],
      ["cost", (t.cost === null ? "unknown" : "$" + fmt(t.cost, 4)) + (t.cost !== null && t.unpriced_calls ? ` (+${fmt(t.unpriced_calls)} unpriced calls)` : "")],
      ["time", fmt(t.seconds, 1) + " s"], ["alive", fmt(data.counts.alive)], ["pruned", fmt(data.counts.pruned)],
      ["failed", fmt(data.counts.failed)],
      ["pairs", fmt(data.counts.pairs)],
    ];
    const box = document.getElementById("totals");
    for (const [label, value] of stats) {
      box.append(el("div", { class: "stat" }, el("b", { text: value }), el("span", { text: label })));
    }
  }

  function renderSeeds() {
    const nav = document.getElementById("seeds");
    nav.append(el("h3", { text: `Seeds (${data.seeds.length})`, style: "margin-top:0" }));
    data.seeds.forEach((seed, i) => {
      const btn = el("button", { "data-seed": seed.id, onclick: () => selectSeed(i) },
        seed.id, el("small", { text: `${seed.nodes.length} nodes · ${seed.pairs.length} pairs` }));
      nav.append(btn);
    });
  }

  function nodeButton(seed, node) {
    const mean = meanScore(node.scores);
    const tip = node.status === "alive" ? `${node.id}: alive` : `${node.id}: ${node.status} — ${node.reason || "no reason recorded"}`;
    return el("button", {
      class: `node ${node.status}`, title: tip, "data-seed": seed.id, "data-node": node.id,
      onclick: () => selectNode(node.id),
    }, node.id,
    node.model ? el("span", { class: "model", text: node.model }) : null,
    mean !== null ? el("span", { class: "score", text: mean.toFixed(1) }) : null,
    node.leaf ? el("span", { class: "star", title: "complete dialogue", text: "\u2605" }) : null);
  }

  function renderTree(seed) {
    const children = {};
    for (const n of seed.nodes) (children[n.parent || ""] = children[n.parent || ""] || []).push(n);
    const build = (parentId) => {
      const kids = children[parentId] || [];
      if (!kids.length) return null;
      return el("ul", {}, ...kids.map((n) => el("li", {}, nodeButton(seed, n), build(n.id))));
    };
    const roots = children[""] || [];
    const box = document.getElementById("tree");
    box.replaceChildren();
    const byVariant = new Map();
    for (const n of roots) {
      const v = n.variant;
      if (!byVariant.has(v)) byVariant.set(v, []);
      byVariant.get(v).push(n);
    }
    const top = el("ul", {});
    for (const [variant, nodes] of byVariant) {
      const info = seed.variants.find((x) => x.variant === variant);
      const label = el("div", { class: "variant" }, el("b", { text: `Prompt variant ${variant}` }),
        info ? ": " + info.text : "");
      top.append(el("li", {}, label, el("ul", {}, ...nodes.map((n) => el("li", {}, nodeButton(seed, n), build(n.id))))));
    }
    box.append(top);
  }

  function message(role, parts, label) {
    const box = el("div", { class: `msg ${role}` }, el("span", { class: "role", text: label || role }));
    if (!parts || !parts.length) {
      box.append(el("span", { class: "empty", text: "(no message)" }));
      return box;
    }
    for (const p of parts) {
      if (p.t === "text") box.append(document.createTextNode(p.text));
      else box.append(el("figure", {},
        el("a", { href: p.src, target: "_blank" }, el("img", { src: p.src, alt: p.caption || "image", loading: "eager" })),
        p.caption ? el("figcaption", { text: p.caption }) : null));
    }
    return box;
  }

  function scoreTable(scores) {
    if (!scores.length) return el("div", { class: "empty", text: "not scored" });
    const rows = scores.map((s) => {
      const width = s.value === null ? 0 : Math.max(2, Math.round((60 * s.value) / scoreMax));
      return el("tr", {}, el("td", { class: "dim", text: s.dim }),
        el("td", { class: "val" }, el("span", { class: "bar bg" }, el("span", { class: "bar", style: `width:${width}px` })),
          s.value === null ? "–" : String(s.value)),
        el("td", { text: s.reason || "" }));
    });
    return el("table", { class: "scores" }, el("tbody", {}, ...rows));
  }

  // Judge and people side by side: one row per dimension, the judge's score beside each person's.
  function compareTable(scores, human) {
    const dims = [...new Set([...scores.map((s) => s.dim), ...human.map((h) => h.dim)])].sort();
    const cell = (value) => value === null || value === undefined ? "–" : String(value);
    const rows = dims.map((dim) => {
      const judge = scores.find((s) => s.dim === dim);
      const people = human.filter((h) => h.dim === dim);
      const agree = judge && judge.value !== null && people.length && people.every((h) => h.value === judge.value);
      const differ = judge && judge.value !== null && people.some((h) => h.value !== null && h.value !== judge.value);
      return el("tr", { class: agree ? "agree" : differ ? "differ" : null, "data-dim": dim },
        el("td", { class: "dim", text: dim }),
        el("td", { class: "val judge", text: judge ? cell(judge.value) : "not judged" }),
        el("td", { class: "val human" }, ...(people.length ? people.map((h) => el("span", {
          class: "person", title: `${h.annotator}${h.origin ? " · " + h.origin : ""}`, text: cell(h.value) })) :
          [el("span", { class: "empty", text: "no label" })])),
        el("td", { class: "why" },
          judge && judge.reason ? el("div", { class: "judge-reason" }, el("b", { text: "judge: " }), judge.reason) : null,
          ...people.filter((h) => h.reason).map((h) => el("div", { class: "human-reason" },
            el("b", { text: `${h.annotator}: ` }), h.reason))));
    });
    return el("table", { class: "scores compare" },
      el("thead", {}, el("tr", {}, el("th", { text: "dimension" }), el("th", { text: "judge" }),
        el("th", { text: "people" }), el("th", { text: "reasons" }))),
      el("tbody", {}, ...rows));
  }

  function scoresBlock(title, scores, human) {
    const heading = el("h3", { text: human && human.length ? `${title}: judge and people` : title });
    return [heading, human && human.length ? compareTable(scores, human) : scoreTable(scores)];
  }

  function findNode(seed, id) { return seed.nodes.find((n) => n.id === id); }

  function pathTo(seed, id) {
    const out = [];
    let cur = findNode(seed, id);
    while (cur) { out.unshift(cur); cur = cur.parent ? findNode(seed, cur.parent) : null; }
    return out;
  }

  function renderTurn(seed, node) {
    const panel = document.getElementById("turn");
    panel.replaceChildren();
    if (!node) {
      panel.append(el("p", { class: "empty", text: "Click a node in the tree to see its turn." }));
      return;
    }
    panel.dataset.node = node.id;
    panel.append(el("h2", { text: `Turn ${node.turn + 1} · ${node.id}` }));
    panel.append(el("div", { class: "meta" },
      el("span", { class: `badge ${node.status}`, text: node.status }),
      el("span", { class: "badge", text: `candidate ${node.candidate}` }),
      node.model ? el("span", { class: "badge", text: node.model }) : null,
      el("span", { class: "badge", text: `${node.calls} calls · ${fmt(node.tokens)} tokens · ${node.cost === null ? "cost unknown" : "$" + fmt(node.cost, 4)}` })));
    if (node.status !== "alive") panel.append(el("div", { class: `reason ${node.status}`, text: `${node.status}: ${node.reason || "no reason recorded"}` }));
    const earlier = pathTo(seed, node.id).slice(0, -1);
    if (earlier.length) {
      const d = el("details", {}, el("summary", { text: `Earlier turns (${earlier.length})` }));
      for (const n of earlier) { d.append(message("user", n.user, `user · turn ${n.turn + 1}`)); d.append(message("assistant", n.assistant, `assistant · ${n.id}`)); }
      panel.append(d);
    }
    panel.append(message("user", node.user, "user"));
    panel.append(message("assistant", node.assistant, "assistant"));
    panel.append(...scoresBlock("Turn scores", node.scores, node.human_scores));
    if (node.dialogue_scores.length || (node.dialogue_human_scores || []).length) {
      panel.append(...scoresBlock("Whole-dialogue scores", node.dialogue_scores, node.dialogue_human_scores));
    }
    if (node.follow_up) panel.append(el("h3", { text: "Follow-up question" }), message("user", node.follow_up, "next user turn"));
  }

  function sideBox(seed, pair, side, cls, label) {
    const id = side === 1 ? pair.response_1 : pair.response_2;
    const node = findNode(seed, id);
    const box = el("div", { class: `side ${cls}` },
      el("h4", {}, label + " · ", el("button", { class: "linkish", onclick: () => selectNode(id), text: id })));
    if (node) {
      if (pair.level === "local") box.append(message("user", node.user, "question"));
      box.append(message("assistant", node.assistant, pair.level === "global" ? "last answer" : "answer"));
    }
    return box;
  }

  function renderPairs(seed) {
    const box = document.getElementById("pairs");
    box.replaceChildren(el("h2", { text: `Preference pairs (${seed.pairs.length})` }));
    if (!seed.pairs.length) box.append(el("p", { class: "empty", text: "No pairs for this seed." }));
    for (const pair of seed.pairs) {
      const first = pair.overall === 2 ? 2 : 1;
      const second = first === 1 ? 2 : 1;
      const tie = pair.overall === 0;
      const verdict = tie ? "tie" : `response ${pair.overall} preferred`;
      const head = el("header", {}, el("b", { text: pair.level }),
        pair.turn !== null ? el("span", { text: `turn ${pair.turn + 1}` }) : null,
        el("span", { class: "muted", text: pair.id }), el("span", { class: "badge", text: `${verdict} · margin ${fmt(pair.margin, 2)}` }),
        el("span", { class: `badge decided ${pair.decided_by || "judge"}`, text: `decided by ${pair.decided_by === "human" ? "people" : "the judge"}` }));
      const sides = el("div", { class: "sides" },
        sideBox(seed, pair, first, tie ? "tie" : "chosen", tie ? `response ${first}` : `chosen (response ${first})`),
        sideBox(seed, pair, second, tie ? "tie" : "rejected", tie ? `response ${second}` : `rejected (response ${second})`));
      const prefs = el("div", { class: "prefs" }, ...pair.preference.map((p) =>
        el("span", { title: p.reason || "" }, el("code", { text: p.dim }), ": " + (p.pref === 0 ? "tie" : `response ${p.pref}`))));
      box.append(el("div", { class: "pair", "data-pair": pair.id }, head, sides, prefs));
    }
  }

  function selectNode(id) {
    const seed = data.seeds[state.seed];
    state.node = id;
    for (const b of document.querySelectorAll("#tree .node")) b.classList.toggle("selected", b.dataset.node === id);
    renderTurn(seed, findNode(seed, id));
  }

  function selectSeed(i) {
    state.seed = i;
    const seed = data.seeds[i];
    for (const b of document.querySelectorAll("#seeds button")) b.classList.toggle("active", b.dataset.seed === seed.id);
    document.getElementById("seed-title").textContent = seed.id;
    document.getElementById("seed-prompt").textContent = seed.prompt;
    renderTree(seed);
    renderPairs(seed);
    const first = seed.nodes.find((n) => n.leaf) || seed.nodes[0];
    if (first) selectNode(first.id); else renderTurn(seed, null);
  }

  renderHeader();
  renderSeeds();
  if (data.seeds.length) selectSeed(0);
  else document.getElementById("tree").append(el("p", { class: "empty", text: data.empty_reason || "This run has no dialogues." }));
  window.interleafViewer = { selectSeed, selectNode };
})();
