/* The knowledge-flow picture: three columns (broadcasting workers, knowledge types, receiving
   workers) drawn by hand in SVG from GET /api/knowledge/flow, polled every few seconds.
   Node heights and band widths are proportional to the number of items. */
(function () {
  'use strict';
  const root = document.getElementById('flow');
  if (!root) return;
  const svg = document.getElementById('flow-svg');
  const empty = document.getElementById('flow-empty');
  const select = document.getElementById('flow-window');
  const status = document.getElementById('flow-status');
  const table = document.querySelector('#flow-table tbody');
  const NS = 'http://www.w3.org/2000/svg';
  const pollMs = Number(root.dataset.pollMs || 5000);
  const PALETTE = ['#2f6fdb', '#1f8a4c', '#c53030', '#b7791f', '#6b46c1', '#0f7b8a',
    '#d53f8c', '#4a5568', '#dd6b20', '#2c7a7b', '#718096', '#38a169'];
  const GAP = 10;
  const NODE_W = 12;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* Stack ``nodes`` ({name, value}) in a column of height ``h``; returns name -> {y, h}. */
  function layout(nodes, h, scale) {
    const out = {};
    let y = 20;
    for (const n of nodes) {
      const nh = Math.max(3, n.value * scale);
      out[n.name] = { y, h: nh, value: n.value, inUsed: 0, outUsed: 0 };
      y += nh + GAP;
    }
    return out;
  }

  function band(x0, y0, x1, y1, width, colour, title, data) {
    const mx = (x0 + x1) / 2;
    const path = el('path', {
      d: `M${x0},${y0} C${mx},${y0} ${mx},${y1} ${x1},${y1}`,
      fill: 'none', stroke: colour, 'stroke-opacity': 0.45, 'stroke-width': Math.max(1, width),
      class: 'link',
    });
    for (const [k, v] of Object.entries(data)) path.dataset[k] = String(v);
    path.append(el('title', {}, title));
    return path;
  }

  function node(x, pos, name, column, colour, anchor, label) {
    const g = el('g', { class: 'node', 'data-name': name, 'data-column': column });
    g.append(el('rect', { x, y: pos.y, width: NODE_W, height: pos.h, fill: colour, rx: 2 }));
    const tx = anchor === 'end' ? x - 6 : x + NODE_W + 6;
    g.append(el('text', { x: tx, y: pos.y + pos.h / 2 + 4, 'text-anchor': anchor, 'font-size': 12 },
      label || `${name} (${pos.value})`));
    return g;
  }

  function draw(body) {
    while (svg.firstChild) svg.firstChild.remove();
    const typeValue = (t) => Math.max(t.broadcast, t.received);
    const columns = [
      body.sources.map((s) => ({ name: s.name, value: s.count })),
      body.types.map((t) => ({ name: t.name, value: typeValue(t) })),
      body.receivers.map((r) => ({ name: r.name, value: r.count })),
    ];
    const tallest = Math.max(...columns.map((c) => c.length), 1);
    const height = Math.max(300, tallest * 44 + 40);
    svg.setAttribute('height', height);
    // At least 720 px wide: on a phone the picture scrolls sideways inside its card
    // instead of squeezing the labels.
    const width = Math.max(720, svg.parentNode.clientWidth || 900);
    svg.setAttribute('width', width);
    const usable = height - 40;
    const scale = Math.min(...columns.filter((c) => c.length).map((c) => {
      const total = c.reduce((a, n) => a + n.value, 0);
      return total ? (usable - GAP * (c.length - 1)) / total : Infinity;
    }), 40);
    const xs = [Math.round(width * 0.18), Math.round(width * 0.5) - NODE_W / 2, Math.round(width * 0.84) - NODE_W];
    const pos = columns.map((c) => layout(c, usable, scale));
    const colourOf = {};
    body.types.forEach((t, i) => { colourOf[t.name] = PALETTE[i % PALETTE.length]; });
    const links = el('g', { class: 'links' });
    for (const b of body.broadcasts) {
      const s = pos[0][b.source];
      const t = pos[1][b.type];
      const w = b.count * scale;
      links.append(band(xs[0] + NODE_W, s.y + s.outUsed + w / 2, xs[1], t.y + t.inUsed + w / 2, w,
        colourOf[b.type], `${b.source} → ${b.type}: ${b.count}`,
        { from: b.source, to: b.type, count: b.count }));
      s.outUsed += w;
      t.inUsed += w;
    }
    for (const r of body.receptions) {
      const t = pos[1][r.type];
      const d = pos[2][r.receiver];
      const w = r.count * scale;
      links.append(band(xs[1] + NODE_W, t.y + t.outUsed + w / 2, xs[2], d.y + d.inUsed + w / 2, w,
        colourOf[r.type], `${r.source} → ${r.type} → ${r.receiver}: ${r.count}`,
        { from: r.type, to: r.receiver, source: r.source, count: r.count }));
      t.outUsed += w;
      d.inUsed += w;
    }
    svg.append(links);
    const nodes = el('g', { class: 'nodes' });
    columns[0].forEach((n) => nodes.append(node(xs[0], pos[0][n.name], n.name, 'source', '#1d2330', 'end')));
    body.types.forEach((t) => nodes.append(node(xs[1], pos[1][t.name], t.name, 'type', colourOf[t.name], 'start',
      `${t.name} (${t.broadcast} sent, ${t.received} delivered)`)));
    columns[2].forEach((n) => nodes.append(node(xs[2], pos[2][n.name], n.name, 'receiver', '#1d2330', 'start')));
    svg.append(nodes);
    svg.append(el('text', { x: xs[0] + NODE_W, y: 12, 'text-anchor': 'end', class: 'colhead' }, 'broadcast by'));
    svg.append(el('text', { x: xs[1] + NODE_W / 2, y: 12, 'text-anchor': 'middle', class: 'colhead' }, 'type'));
    svg.append(el('text', { x: xs[2], y: 12, 'text-anchor': 'start', class: 'colhead' }, 'received by'));
    empty.hidden = body.broadcasts.length > 0 || body.receptions.length > 0;
    root.dataset.nodes = String(svg.querySelectorAll('.node').length);
    root.dataset.links = String(svg.querySelectorAll('.link').length);
  }

  function fillTable(body) {
    const rows = body.broadcasts.map((b) => [b.source, b.type, '(broadcast)', b.count])
      .concat(body.receptions.map((r) => [r.source, r.type, r.receiver, r.count]));
    table.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement('tr');
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = String(c);
        tr.append(td);
      }
      return tr;
    }));
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const url = root.dataset.api + '?window=' + encodeURIComponent(select.value);
      const resp = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (!resp.ok) throw new Error('HTTP ' + resp.status);
      const body = await resp.json();
      draw(body);
      fillTable(body);
      status.textContent = 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
      status.className = 'badge ok';
      root.dataset.updated = String(Number(root.dataset.updated || 0) + 1);
    } catch (err) {
      status.textContent = 'not updated: ' + err.message;
      status.className = 'badge warn';
    }
    timer = setTimeout(refresh, pollMs);
  }
  select.addEventListener('change', refresh);
  window.addEventListener('resize', refresh);
  refresh();
})();
