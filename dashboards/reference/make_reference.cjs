// Reference values computed with Grafana's own @grafana/data library, so the Python emulation in
// dashboards/grafana.py can be checked without Node at test time. Run once (see README.md):
//   cd "$(mktemp -d)" && cp <repo>/dashboards/reference/{package.json,make_reference.cjs} . &&
//   npm install && node make_reference.cjs > <repo>/dashboards/reference/grafana_reference.json
globalThis.navigator = { language: 'en-US', languages: ['en-US'] }; // value formats read the locale
const gd = require('@grafana/data');
const version = require('@grafana/data/package.json').version;

const H = 3600e3;
const D = 24 * H;
// the ranges the tests and the benchmark use ("today" ends at 23:59:59.999) and many more
const ranges = [5 * 60e3, 15 * 60e3, H, 6 * H, 12 * H, D, D - 1, 2 * D, 7 * D, 7 * D - 1, 30 * D, 30 * D - 1, 90 * D, 365 * D, 5 * 365 * D, 10 * 365 * D, 100 * 365 * D];
// panel widths in px of a 1920 px dashboard, w = 1..24 grid columns (dashboards/grafana.py
// panel_resolution: 24 columns, 8 px margins, 8 px content padding), and other resolutions
const col = (1920 - 8 * 23) / 24;
const widths = Array.from({ length: 24 }, (_, i) => Math.max(1, Math.floor(col * (i + 1) + 8 * i - 16)));
const resolutions = [...new Set([1, 20, 50, 100, 200, 300, 600, 1000, 11500, ...widths])];
const lowLimits = [null, '1s', '10s', '15s', '1m', '1h'];
const intervals = [];
const from = gd.dateTime(Date.UTC(2026, 10, 26, 0, 0, 0));
for (const range of ranges) {
  for (const resolution of resolutions) {
    for (const lowLimit of lowLimits) {
      const to = gd.dateTime(from.valueOf() + range);
      const r = gd.rangeUtil.calculateInterval({ from, to, raw: { from, to } }, resolution, lowLimit ?? undefined);
      intervals.push({ range_ms: range, resolution, low_limit: lowLimit, interval_ms: r.intervalMs, interval: r.interval });
    }
  }
}

const reducerIds = ['lastNotNull', 'last', 'firstNotNull', 'first', 'sum', 'mean', 'max', 'min', 'count', 'nonNullCount', 'range', 'diff', 'delta'];
const samples = [
  [1, 2, 3],
  [0.25, null, 0.75, null],
  [null, null],
  [],
  [5],
  [3, -1, 2.5, null, 7],
  [null, 4, null],
  [1e-9, 2e-9, 1e9],
];
const reducers = samples.map((values) => {
  const field = { name: 'v', type: gd.FieldType.number, values: values.slice(), config: {} };
  const r = gd.reduceField({ field, reducers: reducerIds });
  const out = {};
  for (const id of reducerIds) out[id] = r[id] === undefined || Number.isNaN(r[id]) ? null : r[id];
  return { values, results: out };
});

const units = gd.getValueFormats().flatMap((c) => c.submenu.map((s) => s.value)).sort();

process.stdout.write(JSON.stringify({ grafana_data_version: version, intervals, reducers, units }, null, 1) + '\n');
