/* The overview's trend charts: uPlot (static/vendor/uplot, from npm) over
   GET /api/knowledge/timeseries, polled every few seconds (the rollups are written by the
   alert checker, docs/monitoring.md). Each chart's element carries data-points (values
   above zero), data-total (their sum) and data-lines for the tests and for anyone inspecting the page. */
(function () {
  'use strict';
  const root = document.getElementById('trends');
  if (!root || typeof uPlot === 'undefined') return;
  const api = root.dataset.api;
  const pollMs = Number(root.dataset.pollMs || 5000);
  const windowSelect = document.getElementById('trends-window');
  const status = document.getElementById('trends-status');
  const PALETTE = ['#2f6fdb', '#1f8a4c', '#c53030', '#b7791f', '#6b46c1', '#0f7b8a',
    '#d53f8c', '#4a5568', '#dd6b20', '#2c7a7b', '#718096', '#38a169'];
  const CHARTS = [
    { series: 'broadcasts', title: 'Broadcasts by type', by: 'type' },
    { series: 'receptions', title: 'Receptions by type', by: 'type' },
    { series: 'conflicts', title: 'Conflicts' },
    { series: 'api_latency', title: 'API latency (ms)' },
    { series: 'api_requests', title: 'API requests' },
    { series: 'live_connections', title: 'Live connections' },
    { series: 'freshness', title: 'Mean freshness by type', range: [0, 1] },
  ];
  const plots = {};
  window.kxCharts = plots;

  function colour(name, i) {
    const fixed = { opened: '#b7791f', auto_resolved: '#1f8a4c', decided: '#2f6fdb',
      p50: '#1f8a4c', p95: '#b7791f', p99: '#c53030', total: '#2f6fdb' };
    return fixed[name] || PALETTE[i % PALETTE.length];
  }

  function box(spec) {
    let el = document.getElementById('chart-' + spec.series);
    if (!el) {
      el = document.createElement('figure');
      el.id = 'chart-' + spec.series;
      el.className = 'chart';
      const cap = document.createElement('figcaption');
      cap.textContent = spec.title;
      el.append(cap);
      root.querySelector('.charts').append(el);
    }
    return el;
  }

  function utcMinute(ts) {
    return new Date(ts * 1000).toISOString().slice(11, 16);
  }

  function utcStamp(ts) {
    return new Date(ts * 1000).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }

  function width(el) {
    return Math.max(240, el.clientWidth - 16);
  }

  function draw(spec, body) {
    const el = box(spec);
    const data = body.series[spec.series];
    const names = Object.keys(data.lines);
    const values = names.map((n) => data.lines[n]);
    const key = spec.series + '|' + names.join(',');
    let points = 0;
    let total = 0;
    values.forEach((line) => line.forEach((v) => { if (v) { points += 1; total += v; } }));
    el.dataset.points = String(points);
    el.dataset.total = String(Math.round(total * 1000) / 1000);
    el.dataset.lines = String(names.length);
    const rows = [body.timestamps, ...values];
    const plot = plots[spec.series];
    if (plot && plot.key === key) {
      plot.uplot.setData(rows);
      return;
    }
    if (plot) plot.uplot.destroy();
    const opts = {
      width: width(el),
      height: 190,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: spec.range ? { y: { range: spec.range } } : { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      // Times in UTC, as everywhere on the dashboard (the browser's zone may differ).
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      axes: [
        { stroke: '#5b6475', values: (u, splits) => splits.map(utcMinute) },
        { stroke: '#5b6475', size: 48 },
      ],
      series: [{ value: (u, v) => (v == null ? '–' : utcStamp(v)) }].concat(names.map((n, i) => ({
        label: n, stroke: colour(n, i), width: 1.5, spanGaps: false,
        points: { show: body.timestamps.length <= 90, size: 4 },
      }))),
    };
    plots[spec.series] = { key, uplot: new uPlot(opts, rows, el) };
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    const win = windowSelect ? windowSelect.value : '60m';
    try {
      const bodies = {};
      for (const by of ['type', '']) {
        const names = CHARTS.filter((c) => (c.by || '') === by).map((c) => c.series).join(',');
        const url = api + '?window=' + encodeURIComponent(win) + '&series=' + names + (by ? '&by=' + by : '');
        const resp = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
        if (!resp.ok) throw new Error('HTTP ' + resp.status);
        bodies[by] = await resp.json();
      }
      for (const spec of CHARTS) draw(spec, bodies[spec.by || '']);
      const at = new Date();
      status.textContent = 'updated ' + at.toISOString().slice(11, 19) + ' UTC';
      status.className = 'badge ok';
      root.dataset.updated = String(Number(root.dataset.updated || 0) + 1);
    } catch (err) {
      status.textContent = 'not updated: ' + err.message;
      status.className = 'badge warn';
    }
    timer = setTimeout(refresh, pollMs);
  }

  if (windowSelect) windowSelect.addEventListener('change', refresh);
  window.addEventListener('resize', () => {
    for (const spec of CHARTS) {
      const p = plots[spec.series];
      if (p) p.uplot.setSize({ width: width(box(spec)), height: 190 });
    }
  });
  refresh();
})();
