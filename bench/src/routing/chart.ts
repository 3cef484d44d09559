export interface Series {
  name: string;
  /** `lo`/`hi`: the range over repeated runs, drawn as a bar through the point. */
  points: { x: number; y: number; lo?: number; hi?: number }[];
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
}

/** Distinguishable in colour and in grey print (dash patterns). */
const STYLES = [
  { color: '#d62728', dash: '' },
  { color: '#ff7f0e', dash: '6 3' },
  { color: '#9467bd', dash: '2 3' },
  { color: '#2ca02c', dash: '8 3 2 3' },
  { color: '#1f77b4', dash: '' },
  { color: '#8c564b', dash: '4 4' },
];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function num(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

/** 0.01 → "10 ms", 1 → "1 s", 100 → "100 s". */
function secondsLabel(v: number): string {
  if (v < 1) return `${Number((v * 1000).toPrecision(3))} ms`;
  return `${Number(v.toPrecision(3))} s`;
}

/**
 * A line chart as a standalone SVG: linear x, log-10 y (TTFTs span orders of magnitude between
 * arms), one polyline with markers per series, a legend. Hand-written so the benchmark needs no
 * plotting dependency and the file diffs cleanly.
 */
export function ttftChart(spec: ChartSpec): string {
  const W = 820;
  const H = 500;
  const m = { left: 78, right: 190, top: 48, bottom: 58 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const all = spec.series
    .flatMap((s) => s.points.flatMap((p) => [{ x: p.x, y: p.y }, ...(p.lo !== undefined ? [{ x: p.x, y: p.lo }] : []), ...(p.hi !== undefined ? [{ x: p.x, y: p.hi }] : [])]))
    .filter((p) => Number.isFinite(p.y) && p.y > 0);
  const xs = all.map((p) => p.x);
  const xMin = Math.min(0, ...xs);
  const xMax = Math.max(1, ...xs);
  const decadeLo = Math.floor(Math.log10(Math.min(...all.map((p) => p.y), 1)));
  const decadeHi = Math.ceil(Math.log10(Math.max(...all.map((p) => p.y), 1)));
  const lo = decadeLo;
  const hi = decadeHi === decadeLo ? decadeLo + 1 : decadeHi;
  const x = (v: number): number => m.left + ((v - xMin) / (xMax - xMin)) * pw;
  const y = (v: number): number => m.top + ph - ((Math.log10(v) - lo) / (hi - lo)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="14" font-weight="bold">${esc(spec.title)}</text>`);
  // Horizontal grid: each decade solid, 2× and 5× dotted.
  for (let d = lo; d <= hi; d++) {
    for (const f of [1, 2, 5]) {
      const v = f * 10 ** d;
      if (Math.log10(v) > hi + 1e-9) continue;
      const yy = num(y(v));
      out.push(`<line x1="${m.left}" y1="${yy}" x2="${m.left + pw}" y2="${yy}" stroke="${f === 1 ? '#cccccc' : '#eeeeee'}" ${f === 1 ? '' : 'stroke-dasharray="2 2"'}/>`);
      if (f === 1 || hi - lo <= 3) out.push(`<text x="${m.left - 8}" y="${num(y(v) + 4)}" text-anchor="end" fill="${f === 1 ? '#000000' : '#777777'}">${esc(secondsLabel(v))}</text>`);
    }
  }
  // Vertical grid at the measured rates.
  for (const v of [...new Set(xs)].sort((a, b) => a - b)) {
    const xx = num(x(v));
    out.push(`<line x1="${xx}" y1="${m.top}" x2="${xx}" y2="${m.top + ph}" stroke="#eeeeee"/>`);
    out.push(`<text x="${xx}" y="${m.top + ph + 18}" text-anchor="middle">${esc(String(v))}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#000000"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 16}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  spec.series.forEach((s, i) => {
    const style = STYLES[i % STYLES.length]!;
    const pts = s.points.filter((p) => Number.isFinite(p.y) && p.y > 0).sort((a, b) => a.x - b.x);
    if (pts.length > 1) {
      out.push(`<polyline fill="none" stroke="${style.color}" stroke-width="2.2" ${style.dash ? `stroke-dasharray="${style.dash}"` : ''} points="${pts.map((p) => `${num(x(p.x))},${num(y(p.y))}`).join(' ')}"/>`);
    }
    for (const p of pts) {
      if (p.lo === undefined || p.hi === undefined || !(p.lo > 0) || !(p.hi > 0)) continue;
      // Offset per series so bars at the same rate stay apart.
      const xx = num(x(p.x) + (i - (spec.series.length - 1) / 2) * 3);
      out.push(`<line x1="${xx}" y1="${num(y(p.lo))}" x2="${xx}" y2="${num(y(p.hi))}" stroke="${style.color}" stroke-width="1.2" opacity="0.7"/>`);
    }
    for (const p of pts) out.push(`<circle cx="${num(x(p.x))}" cy="${num(y(p.y))}" r="3.5" fill="${style.color}"><title>${esc(`${s.name}: ${p.x} req/s → ${secondsLabel(p.y)}`)}</title></circle>`);
    const ly = m.top + 12 + i * 22;
    const lx = m.left + pw + 16;
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 28}" y2="${ly}" stroke="${style.color}" stroke-width="2.2" ${style.dash ? `stroke-dasharray="${style.dash}"` : ''}/>`);
    out.push(`<circle cx="${lx + 14}" cy="${ly}" r="3.5" fill="${style.color}"/>`);
    out.push(`<text x="${lx + 36}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
