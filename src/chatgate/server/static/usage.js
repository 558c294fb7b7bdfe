// The Usage panel: requests, tokens, latency and errors per connection and model, as a
// table and as charts over time, from GET /api/usage.
import { api } from './api.js';
import { bars, legend, lines, SERIES_COLOURS, stackedBars } from './chart.js';
import { byId, h } from './dom.js';
import { alertError, announce, clearAlert } from './status.js';

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  return search.toString();
}

function filters() {
  const until = byId('u-until').value;
  let end = '';
  if (until) {
    // The date picked is meant whole: ask up to the start of the next day.
    const next = new Date(`${until}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    end = next.toISOString().slice(0, 10);
  }
  return {connection: byId('u-connection').value, since: byId('u-since').value, until: end};
}

const key = (group) => `${group.connection ?? '?'}/${group.model ?? '?'}`;

/** The series of the chart over time: the busiest connection/model pairs, the rest as one.
 * With *mean*, a measure that is an average is combined weighted by requests. */
function seriesOf(groups, bucket, measure, mean = false) {
  const buckets = [...new Set(groups.map((g) => String(g[bucket])))].sort();
  const load = new Map();
  for (const g of groups) load.set(key(g), (load.get(key(g)) || 0) + (g.requests || 0));
  const names = [...load.keys()].sort((a, b) => load.get(b) - load.get(a));
  const shown = names.slice(0, SERIES_COLOURS - 1);
  const others = names.length > shown.length ? 'other models' : null;
  const series = [...shown, ...(others ? [others] : [])].map((name) => ({
    name, values: buckets.map(() => undefined)}));
  const weights = new Map();
  for (const g of groups) {
    const value = measure(g);
    if (!Number.isFinite(value)) continue;
    const name = shown.includes(key(g)) ? key(g) : others;
    const one = series.find((x) => x.name === name);
    const i = buckets.indexOf(String(g[bucket]));
    const weight = mean ? g.requests || 1 : 1;
    one.values[i] = (one.values[i] || 0) + value * weight;
    weights.set(`${name}\n${i}`, (weights.get(`${name}\n${i}`) || 0) + weight);
  }
  if (mean) {
    for (const one of series) {
      one.values = one.values.map((v, i) => (v === undefined ? v
        : v / weights.get(`${one.name}\n${i}`)));
    }
  }
  return {buckets: buckets.map(short), series};
}

function short(bucket) {
  // "2026-12-02T06:00:00Z" → "12-02 06h"; "2026-12-02" → "12-02"
  const hour = /^\d{4}-(\d\d-\d\d)[T ](\d\d)/.exec(bucket);
  if (hour) return `${hour[1]} ${hour[2]}h`;
  const day = /^\d{4}-(\d\d-\d\d)$/.exec(bucket);
  return day ? day[1] : bucket;
}

function figure(title, chart, series) {
  return h('figure', {class: 'figure'}, h('figcaption', {}, title), chart,
    series ? legend(series) : '');
}

function ms(value) {
  return value === undefined || value === null ? '' : Math.round(value).toLocaleString();
}

function table(answer) {
  const cells = (g) => [g.requests, g.errors, g.tokens_in, g.tokens_out]
    .map((v) => h('td', {class: 'num'}, (v ?? 0).toLocaleString()))
    .concat(h('td', {class: 'num'}, ms(g.latency_ms_avg)));
  const total = answer.total || {};
  return h('table', {class: 'data', id: 'usage-table'},
    h('caption', {}, 'Usage per connection and model'),
    h('thead', {}, h('tr', {}, ...['Connection', 'Model', 'Requests', 'Errors', 'Tokens in',
      'Tokens out', 'Average latency (ms)'].map((name) => h('th', {scope: 'col'}, name)))),
    h('tbody', {}, ...(answer.groups || []).map((g) => h('tr', {'data-key': key(g)},
      h('th', {scope: 'row'}, g.connection ?? ''), h('td', {}, g.model ?? ''), ...cells(g)))),
    h('tfoot', {}, h('tr', {}, h('th', {scope: 'row', colspan: 2}, 'Total'), ...cells(total))));
}

function render(byModel, overTime, bucket) {
  const out = byId('usage-out');
  const groups = byModel.groups || [];
  if (!groups.length) {
    out.replaceChildren(h('p', {}, 'No requests recorded for these filters.'));
    return;
  }
  const items = groups.map((g) => ({label: key(g), value: g.requests || 0}))
    .sort((a, b) => b.value - a.value);
  const timed = overTime.groups || [];
  const per = bucket === 'day' ? 'day' : 'hour';
  const requests = seriesOf(timed, bucket, (g) => g.requests || 0);
  const tokens = seriesOf(timed, bucket, (g) => (g.tokens_in || 0) + (g.tokens_out || 0));
  const errors = seriesOf(timed, bucket, (g) => g.errors || 0);
  const latency = seriesOf(timed, bucket, (g) => g.latency_ms_avg, true);
  out.replaceChildren(
    figure('Requests per connection and model', bars({title: 'Requests per connection and model',
      desc: items.map((i) => `${i.label}: ${i.value}`).join('; '), items, unit: 'requests'})),
    h('div', {class: 'charts'},
      figure(`Requests per ${per}`, stackedBars({title: `Requests per ${per}`, desc:
        'Stacked bars by connection and model; the table has the totals.', ...requests,
      unit: 'requests'}), requests.series),
      figure(`Tokens per ${per} (in and out)`, stackedBars({title: `Tokens per ${per}`,
        desc: 'Prompt and completion tokens, stacked by connection and model.', ...tokens,
        unit: 'tokens'}), tokens.series),
      figure(`Average latency per ${per}`, lines({title: `Average latency per ${per}`,
        desc: 'One line per connection and model, in milliseconds.', ...latency, unit: 'ms'}),
      latency.series),
      figure(`Errors per ${per}`, stackedBars({title: `Errors per ${per}`,
        desc: 'Requests that ended in an error, by connection and model.', ...errors,
        unit: 'errors'}), errors.series)),
    table(byModel));
}

/** Read the usage for the filters and draw it. */
export async function loadUsage() {
  clearAlert();
  const chosen = filters();
  const bucket = byId('u-bucket').value;
  try {
    const [byModel, overTime] = await Promise.all([
      api(`/api/usage?${query({...chosen, group_by: 'connection,model'})}`),
      api(`/api/usage?${query({...chosen, group_by: `${bucket},connection,model`})}`),
    ]);
    render(byModel, overTime, bucket);
    announce(`Usage: ${byModel.total?.requests ?? 0} requests.`);
  } catch (error) {
    alertError(error);
  }
}

function fillConnections(list) {
  const select = byId('u-connection');
  const was = select.value;
  select.replaceChildren(h('option', {value: ''}, 'All connections'),
    ...list.map((conn) => h('option', {value: conn.name}, conn.name)));
  if (list.some((conn) => conn.name === was)) select.value = was;
}

/** Build the panel. */
export function setupUsage() {
  fillConnections([]);
  byId('usage-form').addEventListener('submit', (event) => {
    event.preventDefault();
    loadUsage();
  });
  document.addEventListener('chatgate:connections', (event) => fillConnections(event.detail));
}
