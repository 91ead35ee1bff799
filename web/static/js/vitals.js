// Vital signs: the signals telemed knows (docs/monitoring.md, vitals/vitals.go), the live panel of a
// consultation that a device streams into over the `telemed-vitals` and `telemed-waveform` data
// channels, and the list of alerts that the call page and the patient page share.
//
// Everything a device sends is untrusted: frames are checked field by field, readings against the
// catalog, and text only ever reaches the page through textContent.

import { h } from './dom.js';
import { Series, Sweep, drawTimeSeries } from './charts.js';

export const VITALS_LABEL = 'telemed-vitals';
export const WAVEFORM_LABEL = 'telemed-waveform';
export const FRAME_MAX = 64 * 1024; // bytes of one frame

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/**
 * The signals, in display order. `min`/`max` are the physiologically possible values (a reading
 * outside them is a device fault, not a patient); `decimals` how values are shown; `live` the window
 * of the chart in a call; `stale` how long after its last reading a value is shown as old.
 */
export const SIGNALS = [
  { code: '2708-6', name: 'SpO2', unit: '%', unitDisplay: '%', min: 50, max: 100, kind: 'value', decimals: 0,
    live: MINUTE, minSpan: 6, stale: 10 * SECOND },
  { code: '8867-4', name: 'Pulse', unit: '/min', unitDisplay: '/min', min: 20, max: 300, kind: 'value', decimals: 0,
    live: MINUTE, minSpan: 20, stale: 10 * SECOND },
  { code: '85354-9', name: 'Blood pressure', unit: 'mm[Hg]', unitDisplay: 'mmHg', kind: 'panel', decimals: 0,
    live: 30 * MINUTE, minSpan: 40, stale: 15 * MINUTE,
    components: [
      { code: '8480-6', name: 'Systolic', unit: 'mm[Hg]', unitDisplay: 'mmHg', min: 40, max: 300, decimals: 0 },
      { code: '8462-4', name: 'Diastolic', unit: 'mm[Hg]', unitDisplay: 'mmHg', min: 20, max: 200, decimals: 0 },
    ] },
  { code: '8310-5', name: 'Temperature', unit: 'Cel', unitDisplay: '°C', min: 25, max: 45, kind: 'value', decimals: 1,
    live: 60 * MINUTE, minSpan: 1, stale: 30 * MINUTE },
  { code: '9279-1', name: 'Respiration', unit: '/min', unitDisplay: '/min', min: 2, max: 80, kind: 'value', decimals: 0,
    live: MINUTE, minSpan: 8, stale: 30 * SECOND },
  { code: '131329', name: 'ECG', unit: 'mV', unitDisplay: 'mV', min: -10, max: 10, kind: 'waveform', decimals: 2,
    stale: 3 * SECOND },
];

export const ECG_CODE = '131329';
export const BP_CODE = '85354-9';
const PULSE_OXIMETRY = '59408-5'; // accepted for SpO2, shown as it

/** The signal, or panel component, of a code; null if unknown. */
export function signalOf(code) {
  if (code === PULSE_OXIMETRY) code = '2708-6';
  for (const s of SIGNALS) {
    if (s.code === code) return s;
    for (const c of s.components || []) if (c.code === code) return c;
  }
  return null;
}

/** Codes a threshold can be set for: single-valued signals and panel components. */
export const THRESHOLD_SIGNALS = SIGNALS.flatMap((s) => {
  if (s.kind === 'value') return [s];
  if (s.kind === 'panel') return s.components.map((c) => ({ ...c, name: `${c.name} BP`, panel: s.code }));
  return [];
});

/** A value as people read it: 97, 36.8, 128/82. */
export function formatValue(signal, value) {
  if (!Number.isFinite(value)) return '';
  return value.toFixed(signal ? signal.decimals : 0);
}

function inRange(s, v) {
  return typeof v === 'number' && Number.isFinite(v) && v >= s.min && v <= s.max;
}

/**
 * Check a reading against the catalog, as the server does (vitals.Validate), except the clock.
 * Returns {reading} in canonical form, or {reason, outOfRange}.
 */
export function checkReading(r) {
  if (!r || typeof r !== 'object' || Array.isArray(r)) return { reason: 'not a reading' };
  if (typeof r.code !== 'string') return { reason: 'no code' };
  const code = r.code === PULSE_OXIMETRY ? '2708-6' : r.code;
  const s = SIGNALS.find((x) => x.code === code);
  if (!s) return { reason: 'unknown code' };
  const time = typeof r.time === 'string' ? Date.parse(r.time) : NaN;
  if (!Number.isFinite(time)) return { reason: 'no time' };
  const base = { code, signal: s, time: r.time, timeMs: time };
  switch (s.kind) {
    case 'value':
      if (r.unit !== s.unit) return { reason: 'wrong unit' };
      if (typeof r.value !== 'number') return { reason: 'no value' };
      if (!inRange(s, r.value)) return { reason: 'out of range', outOfRange: true };
      return { reading: { ...base, unit: s.unit, value: r.value } };
    case 'panel': {
      if (!Array.isArray(r.components)) return { reason: 'no components' };
      const values = [];
      for (const c of s.components) {
        const found = r.components.filter((x) => x && x.code === c.code);
        if (found.length !== 1) return { reason: `component ${c.code} missing or repeated` };
        if (found[0].unit !== c.unit) return { reason: 'wrong unit' };
        if (typeof found[0].value !== 'number') return { reason: 'no value' };
        if (!inRange(c, found[0].value)) return { reason: 'out of range', outOfRange: true };
        values.push(found[0].value);
      }
      if (values[0] <= values[1]) return { reason: 'systolic not above diastolic', outOfRange: true };
      return { reading: { ...base, unit: s.unit, values } };
    }
    case 'waveform': {
      if (r.unit !== s.unit) return { reason: 'wrong unit' };
      const p = r.period_ms;
      if (typeof p !== 'number' || !(p >= 1 && p <= 100)) return { reason: 'bad period_ms' };
      const samples = r.samples;
      if (!Array.isArray(samples) || samples.length < 1 || samples.length > 5000) return { reason: 'bad samples' };
      for (const v of samples) {
        if (typeof v !== 'number') return { reason: 'bad samples' };
        if (!inRange(s, v)) return { reason: 'out of range', outOfRange: true };
      }
      return { reading: { ...base, unit: s.unit, periodMs: p, samples } };
    }
    default:
      return { reason: 'unknown code' };
  }
}

const encoder = new TextEncoder();

/** Parse a live frame {"type":"reading","seq":N,"reading":{...}}. Returns {seq, reading} or {reason, outOfRange}. */
export function parseFrame(data) {
  if (typeof data !== 'string') return { reason: 'binary frame' };
  if (data.length > FRAME_MAX || (data.length * 3 > FRAME_MAX && encoder.encode(data).length > FRAME_MAX)) {
    return { reason: 'frame too large' };
  }
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    return { reason: 'not JSON' };
  }
  if (!frame || typeof frame !== 'object' || Array.isArray(frame)) return { reason: 'not an object' };
  if (frame.type !== 'reading') return { reason: 'not a reading frame' };
  if (!Number.isSafeInteger(frame.seq) || frame.seq < 1) return { reason: 'bad seq' };
  const checked = checkReading(frame.reading);
  if (!checked.reading) return checked;
  return { seq: frame.seq, reading: checked.reading };
}

// ---------- alerts ----------

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** "SpO2 88 %", "below the low limit of 92 %", for an alert. */
export function describeAlert(a) {
  const s = signalOf(a.code);
  const name = (typeof a.name === 'string' && a.name) || (s ? (THRESHOLD_SIGNALS.find((x) => x.code === s.code) || s).name : String(a.code));
  const unit = s ? s.unitDisplay : (typeof a.unit === 'string' ? a.unit : '');
  // A limit the provider set to 99.9 must not read "100": show the precision the number has.
  const num = (v) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return '?';
    const shown = s ? formatValue(s, v) : String(v);
    return Number(shown) === v ? shown : String(Math.round(v * 1000) / 1000);
  };
  const what = `${name} ${num(a.value)} ${unit}`.trim();
  const why = a.bound === 'low'
    ? `below the low limit of ${num(a.limit)} ${unit}`
    : `above the high limit of ${num(a.limit)} ${unit}`;
  return { name, what, why: why.trim() };
}

/** One alert as a list item: li.alert-item[data-code][data-id][data-bound]. */
export function alertItem(a, { dated = false } = {}) {
  const { what, why } = describeAlert(a);
  const at = new Date(a.at || a.created_at);
  const valid = !Number.isNaN(at.getTime());
  return h('li', {
    class: 'alert-item',
    dataset: { code: String(a.code || ''), id: String(a.id || ''), bound: a.bound === 'low' ? 'low' : 'high' },
  },
  h('span', { class: 'alert-what', text: what }),
  h('span', { class: 'alert-why', text: why }),
  valid ? h('time', { class: 'alert-time', datetime: at.toISOString(), text: (dated ? dateTimeFormat : timeFormat).format(at) }) : null);
}

/**
 * A list of alerts, newest first, at most `max` of them; an alert already shown (the same id) is
 * not added twice.
 */
export class AlertList {
  #list;
  #max;
  #dated;
  #ids = new Set();

  constructor(list, { max = 50, dated = false } = {}) {
    this.#list = list;
    this.#max = max;
    this.#dated = dated;
  }

  get size() { return this.#list.children.length; }

  /** Add an alert at the top. Returns its item, or null if it was already there or not an alert. */
  add(a) {
    if (!a || typeof a !== 'object' || typeof a.code !== 'string') return null;
    const id = typeof a.id === 'string' ? a.id : '';
    if (id && this.#ids.has(id)) return null;
    const li = alertItem(a, { dated: this.#dated });
    if (id) this.#ids.add(id);
    this.#list.prepend(li);
    while (this.#list.children.length > this.#max) {
      const last = this.#list.lastElementChild;
      this.#ids.delete(last.dataset.id);
      last.remove();
    }
    return li;
  }

  /** Replace the list with these alerts (newest first, as the API returns them). */
  set(alerts) {
    this.#list.replaceChildren();
    this.#ids.clear();
    for (const a of [...alerts].reverse()) this.add(a);
  }
}

// ---------- the live panel of a call ----------

const clockFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const WAVE_SECONDS = 6;
const LIVE_POINTS = 1200; // per signal: a minute at 20 readings a second
const TICK_MS = 1000;

function windowText(ms) {
  return ms >= MINUTE * 2 ? `${Math.round(ms / MINUTE)} min` : `${Math.round(ms / SECOND)} s`;
}

function windowWords(ms) {
  return ms >= MINUTE * 2 ? `${Math.round(ms / MINUTE)} minutes` : `${Math.round(ms / SECOND)} seconds`;
}

/**
 * The live vitals of a consultation: one tile per signal a device sends, with its latest value and a
 * moving chart, and the ECG as a sweeping trace.
 */
export class VitalsPanel {
  #root;
  #grid;
  #status;
  #toggle;
  /** @type {Map<string, object>} code -> tile state */
  #tiles = new Map();
  #readings = {};
  #badFrames = 0;
  #outOfRange = 0;
  #waveSamples = 0;
  #waveDropped = 0;
  #sweep = null;
  #raf = 0;
  #timer = 0;
  #waveDirty = false;
  #allDirty = false;
  #sessions = new Set();
  #resize = null;

  /**
   * @param {object} el
   * @param {HTMLElement} el.root     the panel (#vitals), hidden until a device sends something
   * @param {HTMLElement} el.grid     where the tiles go
   * @param {HTMLElement} [el.status] the devices' connection, in words
   * @param {HTMLButtonElement} [el.toggle] collapses and expands the tiles
   */
  constructor({ root, grid, status, toggle }) {
    this.#root = root;
    this.#grid = grid;
    this.#status = status || null;
    this.#toggle = toggle || null;
    if (this.#toggle) {
      this.#toggle.addEventListener('click', () => {
        const open = this.#grid.hidden;
        this.#grid.hidden = !open;
        this.#toggle.setAttribute('aria-expanded', String(open));
        this.#toggle.textContent = open ? 'Hide' : 'Show';
        this.#root.classList.toggle('is-collapsed', !open);
        if (open) this.#redrawAll();
      });
    }
    if (typeof ResizeObserver === 'function') {
      this.#resize = new ResizeObserver(() => this.#redrawAll());
      this.#resize.observe(this.#grid);
    }
  }

  /** Read a device's vitals channels, the ones it opened already and later ones. */
  attach(session) {
    this.#sessions.add(session);
    for (const channel of session.vitalsChannels || []) this.#watch(channel);
    session.addEventListener('vitalschannel', (e) => this.#watch(e.detail));
    session.addEventListener('statechange', () => this.#renderStatus());
    session.addEventListener('closed', () => {
      this.#sessions.delete(session);
      this.#renderStatus();
    });
    this.#renderStatus();
  }

  /** For tests and diagnostics: what has been received and drawn. */
  stats() {
    const readings = {};
    for (const [code, r] of Object.entries(this.#readings)) readings[code] = { ...r };
    return {
      readings,
      waveform: { samples: this.#waveSamples, dropped: this.#waveDropped },
      badFrames: this.#badFrames,
      outOfRange: this.#outOfRange,
    };
  }

  /** Stop drawing and let go of everything (the page is closing the call). */
  destroy() {
    cancelAnimationFrame(this.#raf);
    clearInterval(this.#timer);
    this.#raf = 0;
    this.#timer = 0;
    if (this.#resize) this.#resize.disconnect();
    this.#sessions.clear();
  }

  // ---- frames ----

  #watch(channel) {
    if (channel.label !== VITALS_LABEL && channel.label !== WAVEFORM_LABEL) return;
    // seq counts from 1 per channel; a waveform piece not above the last one drawn comes too late.
    const state = { lastSeq: 0, waveform: channel.label === WAVEFORM_LABEL };
    channel.addEventListener('message', (e) => this.#onFrame(state, e.data));
  }

  #onFrame(state, data) {
    const parsed = parseFrame(data);
    if (!parsed.reading) {
      this.#badFrames += 1;
      if (parsed.outOfRange) this.#outOfRange += 1;
      return;
    }
    const { seq, reading } = parsed;
    if (reading.signal.kind === 'waveform') {
      let lost = 0;
      if (state.waveform) {
        if (seq <= state.lastSeq) {
          this.#waveDropped += 1;
          return;
        }
        if (state.lastSeq) lost = seq - state.lastSeq - 1;
        state.lastSeq = seq;
      }
      this.#onWaveform(reading, lost);
    } else {
      this.#onValue(reading);
    }
  }

  #record(reading, value) {
    const prev = this.#readings[reading.code];
    this.#readings[reading.code] = {
      value,
      unit: reading.unit,
      time: reading.time,
      count: (prev ? prev.count : 0) + 1,
    };
  }

  #onValue(reading) {
    const s = reading.signal;
    const tile = this.#tile(s);
    const now = Date.now();
    if (s.kind === 'panel') {
      const [sys, dia] = reading.values;
      const text = `${formatValue(s, sys)}/${formatValue(s, dia)}`;
      this.#record(reading, text);
      this.#readings[reading.code].components = { [s.components[0].code]: sys, [s.components[1].code]: dia };
      tile.value.textContent = text;
      tile.series.push(now, sys, dia);
    } else {
      this.#record(reading, reading.value);
      tile.value.textContent = formatValue(s, reading.value);
      tile.series.push(now, reading.value);
    }
    this.#touch(tile, reading, now);
    tile.dirty = true;
    this.#schedule();
  }

  #onWaveform(reading, lost) {
    const s = reading.signal;
    const tile = this.#tile(s);
    if (!this.#sweep || this.#sweep.periodMs !== reading.periodMs) {
      this.#sweep = new Sweep(WAVE_SECONDS, reading.periodMs);
      tile.value.textContent = `${Math.round(1000 / reading.periodMs)} Hz`;
    }
    if (lost > 0) this.#sweep.gap(lost * reading.samples.length);
    this.#sweep.push(reading.samples);
    this.#waveSamples += reading.samples.length;
    this.#record(reading, reading.samples[reading.samples.length - 1]);
    this.#touch(tile, reading, Date.now());
    this.#waveDirty = true;
    this.#schedule();
  }

  #touch(tile, reading, now) {
    tile.last = now;
    tile.root.classList.remove('is-stale');
    const t = reading.timeMs;
    tile.time.textContent = Number.isFinite(t) ? clockFormat.format(new Date(t)) : '';
    if (tile.signal.kind === 'waveform') tile.time.textContent = '';
  }

  // ---- tiles ----

  #tile(s) {
    let tile = this.#tiles.get(s.code);
    if (tile) return tile;
    const wave = s.kind === 'waveform';
    const headingId = `vital-${s.code}-name`;
    const label = wave
      ? `${s.name}, lead I, sweeping over the last ${WAVE_SECONDS} seconds`
      : `${s.name} over the last ${windowWords(s.live)}`;
    const canvas = h('canvas', { class: wave ? 'vital-chart vital-wave-chart' : 'vital-chart', role: 'img', 'aria-label': label });
    const value = h('span', { class: 'vital-value' });
    const time = h('span', { class: 'vital-time' });
    const root = h('section', {
      class: wave ? 'vital vital-wave' : 'vital',
      dataset: { code: s.code },
      'aria-labelledby': headingId,
    },
    h('h3', { class: 'vital-name', id: headingId, text: s.name }),
    h('p', { class: 'vital-reading' }, value, ' ', h('span', { class: 'vital-unit', text: wave ? '' : s.unitDisplay })),
    canvas,
    h('p', { class: 'vital-foot' },
      h('span', { class: 'vital-window', 'aria-hidden': 'true', text: wave ? `${WAVE_SECONDS} s sweep` : `last ${windowText(s.live)}` }),
      time));
    tile = {
      signal: s, root, value, time, canvas, last: 0, dirty: true,
      series: wave ? null : new Series(LIVE_POINTS, s.kind === 'panel' ? 2 : 1),
    };
    this.#tiles.set(s.code, tile);

    // Keep the catalog's order, whatever order the signals start in.
    const rank = (code) => SIGNALS.findIndex((x) => x.code === code);
    const next = [...this.#grid.children]
      .filter((el) => rank(el.dataset.code) > rank(s.code))
      .sort((a, b) => rank(a.dataset.code) - rank(b.dataset.code))[0];
    this.#grid.insertBefore(root, next || null);

    if (this.#root.hidden) this.#root.hidden = false;
    if (!this.#timer) this.#timer = setInterval(() => this.#tick(), TICK_MS);
    this.#renderStatus();
    return tile;
  }

  // Charts of numbers move on with the clock; a signal that went quiet is greyed.
  #tick() {
    const now = Date.now();
    for (const tile of this.#tiles.values()) {
      const stale = now - tile.last > tile.signal.stale;
      tile.root.classList.toggle('is-stale', stale);
      if (tile.series && tile.series.length) tile.dirty = true;
    }
    this.#schedule();
  }

  #redrawAll() {
    this.#allDirty = true;
    this.#schedule();
  }

  #schedule() {
    if (this.#raf) return;
    this.#raf = requestAnimationFrame(() => this.#draw());
  }

  #draw() {
    this.#raf = 0;
    if (this.#root.hidden || this.#grid.hidden) return;
    const all = this.#allDirty;
    this.#allDirty = false;
    const now = Date.now();
    for (const tile of this.#tiles.values()) {
      if (tile.signal.kind === 'waveform') {
        if ((this.#waveDirty || all) && this.#sweep) this.#sweep.draw(tile.canvas);
        this.#waveDirty = false;
        continue;
      }
      if (!tile.dirty && !all) continue;
      tile.dirty = false;
      const s = tile.signal;
      const series = s.kind === 'panel'
        ? [{ data: tile.series, field: 0 }, { data: tile.series, field: 1, color: 'line2' }]
        : [{ data: tile.series }];
      drawTimeSeries(tile.canvas, {
        series, from: now - s.live, to: now, compact: true, minSpan: s.minSpan, gapMs: Math.max(10 * SECOND, s.live / 6),
      });
    }
  }

  #renderStatus() {
    if (!this.#status) return;
    const sessions = [...this.#sessions].filter((s) => !s.closed);
    const live = sessions.filter((s) => ['connected', 'completed'].includes(s.iceState));
    let text;
    if (live.length) {
      const names = live.map((s) => s.name).filter(Boolean);
      text = names.length ? `From ${names.join(', ')}` : 'From the patient’s device';
    } else if (sessions.length) {
      text = 'Connecting to the device…';
    } else {
      text = this.#tiles.size ? 'The device is not connected: the values shown may be old' : '';
    }
    if (this.#status.textContent !== text) this.#status.textContent = text;
    this.#root.classList.toggle('is-offline', live.length === 0 && this.#tiles.size > 0);
  }
}
