// Charts drawn as inline SVG: stacked bars and lines over time, and horizontal bars.
// Each is an image with a title and a description, each mark carries its own <title>
// (a tooltip, and text for assistive technology), and the table beside them holds the
// same numbers; the series' colours come from style.css (.s0 … .s6).
import { h, s, uid } from './dom.js';

// Drawn at the size shown on a wide screen (text at its CSS size), scaled down on narrow.
const W = 560;
const H = 230;
const PAD = {top: 26, right: 12, bottom: 44, left: 56};
export const SERIES_COLOURS = 7;

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 2.5, 5, 10].find((m) => value <= m * power);
  return step * power;
}

function number(value) {
  return Number.isInteger(value) ? value.toLocaleString() : value.toLocaleString(undefined,
    {maximumFractionDigits: 1});
}

function frame(title, desc, height = H, width = W) {
  const id = uid('chart');
  return s('svg', {viewBox: `0 0 ${width} ${height}`, width, height, class: 'chart', role: 'img',
    'aria-labelledby': `${id}-t ${id}-d`, preserveAspectRatio: 'xMinYMin meet'},
  s('title', {id: `${id}-t`}, title), s('desc', {id: `${id}-d`}, desc));
}

function axes(svg, max, buckets, unit) {
  const inner = H - PAD.top - PAD.bottom;
  for (const fraction of [0, 0.5, 1]) {
    const y = PAD.top + inner * (1 - fraction);
    svg.append(s('line', {x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: 'grid'}),
      s('text', {x: PAD.left - 6, y: y + 4, class: 'tick end'}, number(max * fraction)));
  }
  svg.append(s('text', {x: 4, y: 14, class: 'tick'}, unit));
  const step = (W - PAD.left - PAD.right) / Math.max(buckets.length, 1);
  // At most about eight labels fit under the axis; the others are in the marks' titles.
  const every = Math.max(1, Math.ceil(buckets.length / 8));
  buckets.forEach((bucket, i) => {
    if (i % every !== 0) return;
    svg.append(s('text', {x: PAD.left + step * (i + 0.5), y: H - PAD.bottom + 16,
      class: 'tick middle'}, bucket));
  });
  return {inner, step};
}

/** Stacked bars: one bar per bucket, one segment per series. */
export function stackedBars({title, desc, buckets, series, unit}) {
  const svg = frame(title, desc);
  const totals = buckets.map((_, i) => series.reduce((sum, one) => sum + (one.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const {inner, step} = axes(svg, max, buckets, unit);
  buckets.forEach((bucket, i) => {
    let base = PAD.top + inner;
    series.forEach((one, k) => {
      const value = one.values[i] || 0;
      if (value <= 0) return;
      const height = (value / max) * inner;
      base -= height;
      svg.append(s('rect', {x: PAD.left + step * i + step * 0.15, y: base, width: step * 0.7,
        height, class: `bar s${k % SERIES_COLOURS}`, 'data-series': one.name,
        'data-value': value}, s('title', {}, `${one.name}, ${bucket}: ${number(value)} ${unit}`)));
    });
  });
  return svg;
}

/** Lines: one per series, a dot at each bucket that has a value. */
export function lines({title, desc, buckets, series, unit}) {
  const svg = frame(title, desc);
  const max = niceMax(Math.max(0, ...series.flatMap((one) => one.values.filter(Number.isFinite))));
  const {inner, step} = axes(svg, max, buckets, unit);
  series.forEach((one, k) => {
    const points = [];
    const group = s('g', {class: `line s${k % SERIES_COLOURS}`, 'data-series': one.name});
    one.values.forEach((value, i) => {
      if (!Number.isFinite(value)) return;
      const x = PAD.left + step * (i + 0.5);
      const y = PAD.top + inner * (1 - value / max);
      points.push(`${x},${y}`);
      group.append(s('circle', {cx: x, cy: y, r: 4, 'data-value': value},
        s('title', {}, `${one.name}, ${buckets[i]}: ${number(value)} ${unit}`)));
    });
    group.prepend(s('polyline', {points: points.join(' ')}));
    svg.append(group);
  });
  return svg;
}

/** Horizontal bars, one per item, largest first. */
export function bars({title, desc, items, unit}) {
  const row = 26;
  const left = 220;
  const width = 760;
  const height = 12 + row * items.length + 8;
  const svg = frame(title, desc, height, width);
  const max = niceMax(Math.max(0, ...items.map((item) => item.value)));
  items.forEach((item, i) => {
    const y = 12 + row * i;
    const length = (item.value / max) * (width - left - 70);
    const label = item.label.length > 28 ? `${item.label.slice(0, 27)}…` : item.label;
    svg.append(
      s('text', {x: left - 8, y: y + 15, class: 'tick end'}, label),
      s('rect', {x: left, y: y + 3, width: Math.max(length, 1), height: row - 8,
        class: `bar s${i % SERIES_COLOURS}`, 'data-series': item.label, 'data-value': item.value},
      s('title', {}, `${item.label}: ${number(item.value)} ${unit}`)),
      s('text', {x: left + Math.max(length, 1) + 6, y: y + 15, class: 'tick'}, number(item.value)));
  });
  return svg;
}

/** The key of a chart's colours: a swatch and a name for each series. */
export function legend(series) {
  return h('ul', {class: 'legend'}, ...series.map((one, k) => h('li', {},
    h('span', {class: `swatch s${k % SERIES_COLOURS}`, 'aria-hidden': 'true'}), one.name)));
}
