// Small canvas charts for vital signs: time series (with threshold lines and bands) and the sweeping
// waveform of a monitor. No DOM beyond the canvas, no libraries. Colours come from CSS custom
// properties on the canvas (--chart-text, --chart-grid, --chart-line, --chart-line-2, --chart-limit,
// --chart-band, --chart-wave), so the stylesheet decides how a chart looks on each page.

const DEFAULT_COLORS = {
  text: '#4a5a6a',
  grid: '#dde4ea',
  line: '#0b5f8a',
  line2: '#b45309',
  limit: '#b42318',
  band: 'rgba(180, 35, 24, 0.07)',
  wave: '#22c55e',
};

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY,
];

const clockFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const clockSecondsFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });

/**
 * A fixed-capacity ring of points: a time (ms) and `fields` numbers each. Pushing past the capacity
 * forgets the oldest point, so a series never grows without bound. Index 0 is the oldest point.
 */
export class Series {
  #t;
  #v;
  #start = 0;
  #length = 0;

  constructor(capacity, fields = 1) {
    this.capacity = Math.max(1, Math.floor(capacity));
    this.fields = fields;
    this.#t = new Float64Array(this.capacity);
    this.#v = new Float64Array(this.capacity * fields);
  }

  get length() { return this.#length; }

  push(t, ...values) {
    let i;
    if (this.#length < this.capacity) {
      i = (this.#start + this.#length) % this.capacity;
      this.#length += 1;
    } else {
      i = this.#start;
      this.#start = (this.#start + 1) % this.capacity;
    }
    this.#t[i] = t;
    for (let f = 0; f < this.fields; f += 1) {
      const v = values[f];
      this.#v[i * this.fields + f] = typeof v === 'number' ? v : NaN;
    }
  }

  clear() {
    this.#start = 0;
    this.#length = 0;
  }

  time(i) { return this.#t[(this.#start + i) % this.capacity]; }

  value(i, field = 0) { return this.#v[((this.#start + i) % this.capacity) * this.fields + field]; }

  /** The newest point's time, or NaN. */
  get lastTime() { return this.#length ? this.time(this.#length - 1) : NaN; }
}

/**
 * Make the canvas's backing store match its size on screen (times the device pixel ratio).
 * Returns {ctx, width, height} in CSS pixels, or null while the canvas is not displayed.
 */
export function fitCanvas(canvas) {
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!width || !height) return null;
  const dpr = Math.min(window.devicePixelRatio || 1, 3);
  const w = Math.round(width * dpr);
  const h = Math.round(height * dpr);
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

/** The chart colours for a canvas, from its CSS custom properties. */
export function chartColors(canvas) {
  const style = getComputedStyle(canvas);
  const pick = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
  return {
    text: pick('--chart-text', DEFAULT_COLORS.text),
    grid: pick('--chart-grid', DEFAULT_COLORS.grid),
    line: pick('--chart-line', DEFAULT_COLORS.line),
    line2: pick('--chart-line-2', DEFAULT_COLORS.line2),
    limit: pick('--chart-limit', DEFAULT_COLORS.limit),
    band: pick('--chart-band', DEFAULT_COLORS.band),
    wave: pick('--chart-wave', DEFAULT_COLORS.wave),
    font: `${style.fontWeight || 400} 11px ${style.fontFamily || 'system-ui, sans-serif'}`,
  };
}

/** Round numbers for a y axis between lo and hi, about `count` of them. */
export function niceTicks(lo, hi, count = 4) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  }
  return out;
}

function localOffset(t) {
  return -new Date(t).getTimezoneOffset() * MINUTE;
}

/** Tick times between from and to, aligned to local time, about one per `spacing` pixels. */
export function timeTicks(from, to, width, spacing = 90) {
  const span = to - from;
  if (!(span > 0)) return { step: MINUTE, ticks: [] };
  const want = Math.max(2, Math.floor(width / spacing));
  const step = TIME_STEPS.find((s) => span / s <= want) || Math.ceil(span / want / DAY) * DAY;
  const off = localOffset(from);
  const ticks = [];
  for (let t = Math.ceil((from + off) / step) * step - off; t <= to; t += step) ticks.push(t);
  return { step, ticks };
}

function timeLabel(t, step, span) {
  const d = new Date(t);
  if (step >= DAY) return dayFormat.format(d);
  const clock = step < MINUTE ? clockSecondsFormat.format(d) : clockFormat.format(d);
  // Over more than a day, midnight says which day it is.
  if (span > DAY && d.getHours() === 0 && d.getMinutes() === 0) return dayFormat.format(d);
  return clock;
}

function formatNumber(v) {
  const a = Math.abs(v);
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  if (a >= 10) return v.toFixed(1).replace(/\.0$/, '');
  return String(Number(v.toFixed(2)));
}

/**
 * Draw a time series chart.
 *
 * @param {HTMLCanvasElement} canvas
 * @param {object} o
 * @param {{data: Series, field?: number, color?: 'line'|'line2', label?: string}[]} o.series
 * @param {number} o.from  ms, left edge
 * @param {number} o.to    ms, right edge
 * @param {number} [o.yMin] fixed bottom (else from the data)
 * @param {number} [o.yMax] fixed top
 * @param {number} [o.minSpan] the y range is at least this wide
 * @param {{value:number, kind:'low'|'high', label?:string, color?:string, align?:'left'|'right'}[]} [o.limits]
 *   threshold lines; the area beyond each is shaded (unless o.bands is false)
 * @param {boolean} [o.compact] no axes and labels (a small live chart)
 * @param {'clock'|'relative'} [o.xLabels] clock times, or seconds before `to` ("−30 s")
 * @param {number} [o.gapMs] a longer pause between two points breaks the line
 * @param {string} [o.empty] text shown when there is nothing to draw
 * @returns {number} how many points of the first series were drawn
 */
export function drawTimeSeries(canvas, o) {
  const fit = fitCanvas(canvas);
  if (!fit) return 0;
  const { ctx, width, height } = fit;
  const colors = chartColors(canvas);
  const { from, to } = o;
  const compact = Boolean(o.compact);
  const limits = (o.limits || []).filter((l) => Number.isFinite(l.value));

  // The y range: the data, the thresholds, at least minSpan.
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of o.series) {
    const f = s.field || 0;
    for (let i = 0; i < s.data.length; i += 1) {
      const t = s.data.time(i);
      if (t < from || t > to) continue;
      const v = s.data.value(i, f);
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  const hasData = lo <= hi;
  for (const l of limits) {
    if (!hasData || !compact) {
      lo = Math.min(lo, l.value);
      hi = Math.max(hi, l.value);
    }
  }
  if (Number.isFinite(o.yMin)) lo = o.yMin;
  if (Number.isFinite(o.yMax)) hi = o.yMax;
  if (!(lo <= hi)) { lo = 0; hi = 1; }
  const minSpan = o.minSpan || 1;
  if (hi - lo < minSpan) {
    const mid = (hi + lo) / 2;
    lo = mid - minSpan / 2;
    hi = mid + minSpan / 2;
  }
  const pad = (hi - lo) * 0.08;
  if (!Number.isFinite(o.yMin)) lo -= pad;
  if (!Number.isFinite(o.yMax)) hi += pad;

  ctx.font = colors.font;
  const yTicks = compact ? [] : niceTicks(lo, hi, Math.max(2, Math.floor(height / 45)));
  const left = compact ? 2 : Math.ceil(Math.max(...yTicks.map((v) => ctx.measureText(formatNumber(v)).width), 10)) + 10;
  const right = compact ? 2 : 10;
  const top = compact ? 4 : 8;
  const bottom = compact ? 4 : 22;
  const plotW = Math.max(1, width - left - right);
  const plotH = Math.max(1, height - top - bottom);
  const x = (t) => left + ((t - from) / (to - from)) * plotW;
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * plotH;

  // Grid and axes.
  if (!compact) {
    ctx.strokeStyle = colors.grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = colors.text;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of yTicks) {
      const py = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, py);
      ctx.lineTo(left + plotW, py);
      ctx.stroke();
      ctx.fillText(formatNumber(v), left - 6, py);
    }
    const { step, ticks } = timeTicks(from, to, plotW);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const t of ticks) {
      const px = Math.round(x(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(px, top);
      ctx.lineTo(px, top + plotH);
      ctx.stroke();
      const label = o.xLabels === 'relative'
        ? (to - t < 500 ? 'now' : `−${Math.round((to - t) / 1000)} s`)
        : timeLabel(t, step, to - from);
      ctx.fillText(label, Math.min(Math.max(px, left + 16), left + plotW - 16), top + plotH + 5);
    }
  }

  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top - 1, plotW, plotH + 2);
  ctx.clip();

  // Thresholds: the area beyond each bound shaded, the bound a dashed line.
  for (const l of limits) {
    const py = y(l.value);
    if (o.bands !== false) {
      ctx.fillStyle = colors.band;
      if (l.kind === 'low') ctx.fillRect(left, py, plotW, top + plotH - py);
      else ctx.fillRect(left, top, plotW, py - top);
    }
    ctx.strokeStyle = l.color || colors.limit;
    ctx.lineWidth = 1;
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    ctx.moveTo(left, Math.round(py) + 0.5);
    ctx.lineTo(left + plotW, Math.round(py) + 0.5);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  let drawn = 0;
  o.series.forEach((s, index) => {
    const n = plotSeries(ctx, s, { from, to, x, y, gapMs: o.gapMs, plotW, color: colors[s.color || (index ? 'line2' : 'line')] || colors.line, compact });
    if (index === 0) drawn = n;
  });
  ctx.restore();

  if (!compact && limits.length) {
    ctx.font = colors.font;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'bottom';
    for (const l of limits) {
      if (!l.label) continue;
      const py = y(l.value);
      if (py < top || py > top + plotH) continue;
      ctx.fillStyle = l.color || colors.limit;
      ctx.textAlign = l.align === 'right' ? 'right' : 'left';
      ctx.fillText(l.label, l.align === 'right' ? left + plotW - 4 : left + 4, l.kind === 'low' ? py + 13 : py - 2);
    }
  }

  if (!hasData && o.empty && !compact) {
    ctx.fillStyle = colors.text;
    ctx.font = `14px ${getComputedStyle(canvas).fontFamily || 'sans-serif'}`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(o.empty, left + plotW / 2, top + plotH / 2);
  }
  return drawn;
}

// One line. Many points per pixel column are drawn as that column's range (min to max), so ten
// thousand readings cost no more than the canvas is wide. A few points get dots, to be seen at all.
function plotSeries(ctx, s, { from, to, x, y, gapMs, plotW, color, compact }) {
  const f = s.field || 0;
  const data = s.data;
  let count = 0;
  for (let i = 0; i < data.length; i += 1) {
    const t = data.time(i);
    if (t >= from && t <= to && Number.isFinite(data.value(i, f))) count += 1;
  }
  if (count === 0) return 0;

  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineWidth = compact ? 1.5 : 1.75;
  ctx.lineJoin = 'round';
  ctx.beginPath();
  let prevT = NaN;
  let col = NaN;
  let colMin = 0;
  let colMax = 0;
  const dense = count > plotW * 2;
  const flushColumn = () => {
    if (Number.isFinite(col) && colMax - colMin >= 0.5) {
      ctx.moveTo(col, colMin);
      ctx.lineTo(col, colMax);
    }
  };
  const dots = [];
  for (let i = 0; i < data.length; i += 1) {
    const t = data.time(i);
    const v = data.value(i, f);
    if (t < from || t > to || !Number.isFinite(v)) continue;
    const px = x(t);
    const py = y(v);
    const broken = !Number.isFinite(prevT) || (gapMs && t - prevT > gapMs);
    if (dense) {
      const c = Math.round(px);
      if (c === col && !broken) {
        if (py < colMin) colMin = py;
        if (py > colMax) colMax = py;
        prevT = t;
        continue;
      }
      flushColumn();
      if (broken) ctx.moveTo(c, py);
      else ctx.lineTo(c, py);
      col = c;
      colMin = py;
      colMax = py;
    } else {
      if (broken) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
      if (count <= 200 || broken) dots.push(px, py);
    }
    prevT = t;
  }
  flushColumn();
  ctx.stroke();
  const r = compact ? 1.75 : 2.5;
  for (let i = 0; i < dots.length; i += 2) {
    ctx.beginPath();
    ctx.arc(dots[i], dots[i + 1], r, 0, 2 * Math.PI);
    ctx.fill();
  }
  return count;
}

/**
 * The sweeping trace of a monitor: samples are written at a cursor that moves left to right and
 * wraps, over the previous sweep, with a short gap erased ahead of it. The buffer is fixed: a long
 * call uses no more memory than a short one.
 */
export class Sweep {
  #buf;
  #cursor = 0;

  /**
   * @param {number} seconds the width of the window
   * @param {number} periodMs time between samples
   */
  constructor(seconds, periodMs) {
    this.seconds = seconds;
    this.periodMs = periodMs;
    this.#buf = new Float32Array(Math.max(2, Math.round((seconds * 1000) / periodMs))).fill(NaN);
  }

  get capacity() { return this.#buf.length; }

  /** Append samples at the cursor. */
  push(samples) {
    const buf = this.#buf;
    for (let i = 0; i < samples.length; i += 1) {
      buf[this.#cursor] = samples[i];
      this.#cursor = (this.#cursor + 1) % buf.length;
    }
  }

  /** Leave `n` samples blank (lost data), so that what follows is drawn where it belongs. */
  gap(n) {
    const buf = this.#buf;
    const count = Math.min(Math.max(0, Math.floor(n)), buf.length);
    for (let i = 0; i < count; i += 1) {
      buf[this.#cursor] = NaN;
      this.#cursor = (this.#cursor + 1) % buf.length;
    }
  }

  clear() {
    this.#buf.fill(NaN);
    this.#cursor = 0;
  }

  /**
   * Draw the trace. The vertical scale fits the samples shown, at least `minSpan` high.
   * @returns {boolean} whether anything was drawn
   */
  draw(canvas, { minSpan = 1.5, grid = true } = {}) {
    const fit = fitCanvas(canvas);
    if (!fit) return false;
    const { ctx, width, height } = fit;
    const colors = chartColors(canvas);
    const buf = this.#buf;
    const n = buf.length;

    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i += 1) {
      const v = buf[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!(lo <= hi)) { lo = -0.5; hi = 1; }
    if (hi - lo < minSpan) {
      const mid = (hi + lo) / 2;
      lo = mid - minSpan / 2;
      hi = mid + minSpan / 2;
    }
    const pad = (hi - lo) * 0.1;
    lo -= pad;
    hi += pad;
    const x = (i) => (i / (n - 1)) * width;
    const y = (v) => (1 - (v - lo) / (hi - lo)) * height;

    if (grid) {
      // ECG paper: a line every 0.2 s and every 0.5 mV.
      ctx.strokeStyle = colors.grid;
      ctx.lineWidth = 1;
      ctx.beginPath();
      const perLine = 200 / this.periodMs;
      for (let i = perLine; i < n; i += perLine) {
        const px = Math.round(x(i)) + 0.5;
        ctx.moveTo(px, 0);
        ctx.lineTo(px, height);
      }
      for (let v = Math.ceil(lo / 0.5) * 0.5; v <= hi; v += 0.5) {
        const py = Math.round(y(v)) + 0.5;
        ctx.moveTo(0, py);
        ctx.lineTo(width, py);
      }
      ctx.stroke();
    }

    const erase = Math.max(2, Math.round(n * 0.03));
    ctx.strokeStyle = colors.wave;
    ctx.lineWidth = 1.75;
    ctx.lineJoin = 'round';
    ctx.beginPath();
    let pen = false;
    let drew = false;
    for (let i = 0; i < n; i += 1) {
      // The samples just ahead of the cursor are the oldest: erased, so the sweep reads clearly.
      const ahead = (i - this.#cursor + n) % n;
      const v = buf[i];
      if (ahead < erase || !Number.isFinite(v)) {
        pen = false;
        continue;
      }
      if (pen && i > 0) ctx.lineTo(x(i), y(v));
      else ctx.moveTo(x(i), y(v));
      pen = true;
      drew = true;
    }
    ctx.stroke();
    return drew;
  }
}
