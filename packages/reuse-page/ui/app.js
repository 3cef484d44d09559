// The cache-reuse page: polls this process's /v1/analytics and /v1/analytics/history and charts
// them with uPlot. Plain browser JavaScript, served as is (no build step).
/* global uPlot */
'use strict';

(function () {
  const REFRESH_MS = 2000;
  const MAX_POINTS = 720;
  const COLORS = ['#3538cd', '#12805c', '#c4320a', '#b54708', '#6941c6', '#0e7090', '#c11574', '#4e5ba6', '#667085', '#027a48'];
  const api = (path) => new URL(`../${path}`, location.href).toString();

  /** Samples of the running totals, oldest first (from /v1/analytics/history). */
  let points = [];
  const charts = {};
  let updates = 0;

  const pct = (v) => (v === null || v === undefined || Number.isNaN(v) ? '–' : `${(v * 100).toFixed(1)} %`);
  const num = (v) => (v === null || v === undefined ? '–' : Number(v).toLocaleString());
  const el = (id) => document.getElementById(id);

  /** Per interval between consecutive samples: hit ratio of each key of `field` (by_model: scored, by_pod: routed). */
  function ratioSeries(field) {
    const keys = new Set();
    for (const p of points) for (const k of Object.keys(p[field] || {})) keys.add(k);
    const names = [...keys].sort();
    const rows = names.map(() => []);
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1][field] || {};
      const b = points[i][field] || {};
      names.forEach((k, j) => {
        const blocks = (b[k]?.blocks ?? 0) - (a[k]?.blocks ?? 0);
        const hit = (b[k]?.hit_blocks ?? 0) - (a[k]?.hit_blocks ?? 0);
        rows[j].push(blocks > 0 ? Math.max(0, Math.min(1, hit / blocks)) : null);
      });
    }
    return { names, rows };
  }

  /** Per interval: each tier's share of the blocks routed (all pods together). */
  function tierSeries() {
    const tiers = new Set();
    for (const p of points) for (const pod of Object.values(p.by_pod || {})) for (const t of Object.keys(pod.tiers || {})) tiers.add(t);
    const names = [...tiers].sort();
    const rows = names.map(() => []);
    const sum = (p, f) => Object.values(p.by_pod || {}).reduce((s, pod) => s + f(pod), 0);
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1];
      const b = points[i];
      const blocks = sum(b, (x) => x.blocks) - sum(a, (x) => x.blocks);
      names.forEach((t, j) => {
        const n = sum(b, (x) => x.tiers?.[t] ?? 0) - sum(a, (x) => x.tiers?.[t] ?? 0);
        rows[j].push(blocks > 0 ? Math.max(0, n / blocks) : null);
      });
    }
    return { names, rows };
  }

  function speculationSeries() {
    const row = [];
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1].speculation;
      const b = points[i].speculation;
      const confirmed = b.confirmed - a.confirmed;
      const settled = confirmed + (b.expired - a.expired);
      row.push(settled > 0 ? Math.max(0, Math.min(1, confirmed / settled)) : null);
    }
    return { names: ['accuracy'], rows: [row] };
  }

  /** A value per sample (not per interval): index entries or event lag of each pod. */
  function gaugeSeries(read) {
    const keys = new Set();
    for (const p of points) for (const k of Object.keys(read(p))) keys.add(k);
    const names = [...keys].sort();
    const rows = names.map((k) => points.slice(1).map((p) => read(p)[k] ?? null));
    return { names, rows };
  }

  function draw(id, series, unit) {
    const box = el(id);
    const xs = points.slice(1).map((p) => p.t / 1000);
    const values = series.rows.reduce((n, r) => n + r.filter((v) => v !== null).length, 0);
    box.dataset.series = String(series.names.length);
    box.dataset.points = String(values);
    if (values === 0) {
      charts[id]?.chart.destroy();
      delete charts[id];
      box.innerHTML = '<div class="empty">no data yet: send some traffic</div>';
      return;
    }
    const data = [xs, ...series.rows];
    const signature = series.names.join('\u0000');
    const existing = charts[id];
    if (existing && existing.signature === signature) {
      existing.chart.setData(data);
      return;
    }
    existing?.chart.destroy();
    box.innerHTML = '';
    const fmt = unit === 'ratio' ? (v) => (v === null ? '–' : `${(v * 100).toFixed(0)}%`) : unit === 's' ? (v) => (v === null ? '–' : `${v}s`) : (v) => (v === null ? '–' : Number(v).toLocaleString());
    const opts = {
      width: box.clientWidth || 400,
      height: 200,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: unit === 'ratio' ? { y: { range: [0, 1] } } : {},
      axes: [{}, { values: (_u, ticks) => ticks.map(fmt), size: 48 }],
      series: [{}, ...series.names.map((name, i) => ({ label: name, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, points: { size: 4 } }))],
    };
    charts[id] = { chart: new uPlot(opts, data, box), signature };
  }

  function renderTables(view) {
    const prefixes = el('prefixes').querySelector('tbody');
    prefixes.innerHTML = '';
    (view.top_prefixes || []).forEach((p, i) => {
      const tr = document.createElement('tr');
      const cells = [String(i + 1), p.model, `${num(p.blocks)} (${num(p.tokens)} tokens)`, num(p.requests)];
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = c;
        tr.appendChild(td);
      }
      const holders = document.createElement('td');
      if ((p.pods || []).length === 0) holders.textContent = 'no pod now';
      for (const pod of p.pods || []) {
        const chip = document.createElement('span');
        chip.className = 'chip';
        chip.textContent = pod;
        holders.appendChild(chip);
      }
      tr.appendChild(holders);
      const preview = document.createElement('td');
      preview.className = 'preview';
      preview.textContent = p.preview ?? `key ${p.key}`;
      preview.title = p.preview ?? '';
      tr.appendChild(preview);
      prefixes.appendChild(tr);
    });
    if ((view.top_prefixes || []).length === 0) prefixes.innerHTML = '<tr><td colspan="6">no shared prefix yet</td></tr>';

    const ingestion = el('ingestion').querySelector('tbody');
    ingestion.innerHTML = '';
    const pods = new Set([...Object.keys(view.index.by_pod || {}), ...Object.keys(view.events || {})]);
    for (const pod of [...pods].sort()) {
      const idx = view.index.by_pod[pod] || { entries: 0, speculative: 0 };
      const ev = view.events[pod];
      const tr = document.createElement('tr');
      const cells = [
        [pod, ''],
        [num(idx.entries), 'num'],
        [num(idx.speculative), 'num'],
        [ev ? ev.last_seq ?? '–' : 'publisher reads', 'num'],
        [ev ? num(ev.gaps) : '–', 'num'],
        [ev ? num(ev.replays) : '–', 'num'],
        [ev ? num(ev.resets) : '–', 'num'],
        [ev ? num(ev.lost) : '–', ev && ev.lost > 0 ? 'num bad' : 'num'],
        [ev ? `${ev.lag_seconds.p50 ?? '–'} / ${ev.lag_seconds.p90 ?? '–'} s` : '–', 'num'],
      ];
      for (const [text, cls] of cells) {
        const td = document.createElement('td');
        td.textContent = text;
        td.className = cls;
        tr.appendChild(td);
      }
      ingestion.appendChild(tr);
    }
  }

  function renderKpis(view) {
    const models = Object.values(view.scoring.by_model || {});
    const blocks = models.reduce((s, m) => s + m.blocks, 0);
    el('kpi-hit').textContent = blocks > 0 ? pct(models.reduce((s, m) => s + m.hit_blocks, 0) / blocks) : '–';
    const routed = Object.values(view.routing.by_pod || {});
    const routedBlocks = routed.reduce((s, m) => s + m.blocks, 0);
    el('kpi-routed').textContent = routedBlocks > 0 ? pct(routed.reduce((s, m) => s + m.hit_blocks, 0) / routedBlocks) : '–';
    el('kpi-spec').textContent = pct(view.speculation.accuracy);
    el('kpi-entries').textContent = num(view.index.entries);
    const events = Object.values(view.events || {});
    el('kpi-pods').textContent = events.length > 0 ? `${events.filter((e) => e.lost === 0).length} / ${events.length}` : '–';
  }

  async function refresh() {
    const since = points.length > 0 ? points[points.length - 1].t : 0;
    const [viewRes, historyRes] = await Promise.all([fetch(api('v1/analytics?top=15')), fetch(api(`v1/analytics/history?since=${since}`))]);
    if (!viewRes.ok || !historyRes.ok) throw new Error(`analytics answered ${viewRes.status} / ${historyRes.status}`);
    const view = await viewRes.json();
    const history = await historyRes.json();
    points = points.concat(history.points).slice(-MAX_POINTS);
    renderKpis(view);
    renderTables(view);
    draw('chart-model', ratioSeries('by_model'), 'ratio');
    draw('chart-pod', ratioSeries('by_pod'), 'ratio');
    draw('chart-tier', tierSeries(), 'ratio');
    draw('chart-spec', speculationSeries(), 'ratio');
    draw('chart-entries', gaugeSeries((p) => p.entries || {}), 'count');
    draw('chart-lag', gaugeSeries((p) => Object.fromEntries(Object.entries(p.events || {}).map(([pod, e]) => [pod, e.lag_p90]))), 's');
    updates++;
    window.kvixReusePage = { updates, points: points.length };
    const status = el('status');
    status.className = '';
    // An EPP with routing workers merges theirs; one that did not answer is left out of the counts.
    const workers = view.workers ? ` · workers ${view.workers.included.join(', ') || 'none'}${view.workers.missing.length > 0 ? ` (${view.workers.missing.join(', ')} not answering: left out)` : ''}` : '';
    status.textContent = `${num(view.scoring.requests)} prompts scored, ${num(view.routing.decisions)} routed since ${new Date(view.since).toLocaleString()} · every ${history.interval_ms / 1000} s${workers}`;
  }

  async function loop() {
    try {
      await refresh();
    } catch (err) {
      const status = el('status');
      status.className = 'error';
      status.textContent = `cannot read the analytics: ${err.message}`;
    }
    setTimeout(loop, REFRESH_MS);
  }

  window.addEventListener('resize', () => {
    for (const [id, c] of Object.entries(charts)) c.chart.setSize({ width: el(id).clientWidth, height: 200 });
  });
  loop();
})();
