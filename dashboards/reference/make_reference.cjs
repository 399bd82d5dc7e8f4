// Reference values computed with Grafana's own @grafana/data library, so the Python emulation in
// dashboards/grafana.py can be checked without Node at test time. Run once (see README.md):
//   cd "$(mktemp -d)" && cp <repo>/dashboards/reference/{package.json,make_reference.cjs} . &&
//   npm install && node make_reference.cjs > <repo>/dashboards/reference/grafana_reference.json
globalThis.navigator = { language: 'en-US', languages: ['en-US'] }; // value formats read the locale
const gd = require('@grafana/data');
const version = require('@grafana/data/package.json').version;

const H = 3600e3;
const D = 24 * H;
const ranges = [5 * 60e3, 15 * 60e3, H, 6 * H, 12 * H, D, 2 * D, 7 * D, 30 * D, 90 * D, 365 * D, 5 * 365 * D, 100 * 365 * D];
const resolutions = [1, 50, 100, 200, 300, 478, 600, 958, 1000, 1437, 1916, 11500];
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
