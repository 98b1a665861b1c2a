/**
 * A grouped horizontal bar chart as standalone SVG: one group per workload, one
 * bar per deployment. No dependencies; readable in any browser or viewer.
 */
export interface ChartSeries {
  label: string;
  values: number[];
}

const COLORS = ['#1b5e20', '#1565c0', '#6a1b9a', '#c62828', '#ef6c00', '#455a64', '#00838f', '#ad1457'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function barChart(opts: { title: string; unit: string; groups: string[]; series: ChartSeries[] }): string {
  const barH = 14;
  const gap = 10;
  const labelW = 190;
  const plotW = 520;
  const groupH = opts.series.length * barH + gap;
  const top = 40;
  const legendH = 18 * Math.ceil(opts.series.length / 3) + 10;
  const height = top + opts.groups.length * groupH + legendH + 20;
  const width = labelW + plotW + 110;
  const max = Math.max(1, ...opts.series.flatMap((s) => s.values.filter(Number.isFinite)));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${esc(opts.title)}</text>`,
  ];
  opts.groups.forEach((g, gi) => {
    const y0 = top + gi * groupH;
    out.push(`<text x="${labelW - 8}" y="${y0 + (opts.series.length * barH) / 2 + 4}" text-anchor="end">${esc(g)}</text>`);
    opts.series.forEach((s, si) => {
      const v = s.values[gi] ?? NaN;
      const w = Number.isFinite(v) ? (v / max) * plotW : 0;
      const y = y0 + si * barH;
      out.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH - 2}" fill="${COLORS[si % COLORS.length]}"/>`);
      const text = Number.isFinite(v) ? `${v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1)} ${opts.unit}` : 'n/a';
      out.push(`<text x="${labelW + w + 4}" y="${y + barH - 4}">${esc(text)}</text>`);
    });
  });
  const ly = top + opts.groups.length * groupH + 10;
  opts.series.forEach((s, si) => {
    const x = 10 + (si % 3) * 240;
    const y = ly + Math.floor(si / 3) * 18;
    out.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${COLORS[si % COLORS.length]}"/>`);
    out.push(`<text x="${x + 16}" y="${y + 10}">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
