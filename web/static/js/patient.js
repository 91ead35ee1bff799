// A patient's page, for their provider: devices and enrollment, alert thresholds, alerts as they
// happen (server-sent events), and the history of their readings (docs/monitoring.md).

import { api } from './api.js';
import { account, toSignIn } from './account.js';
import { $, h, copyText, formatDate } from './dom.js';
import { Series, drawTimeSeries } from './charts.js';
import {
  SIGNALS, THRESHOLD_SIGNALS, ECG_CODE, AlertList, formatValue, signalOf,
} from './vitals.js';

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const RANGES = { '1h': HOUR, '24h': DAY, '7d': 7 * DAY, '30d': 30 * DAY };
const ECG_STRIP_MS = MINUTE;
const LIVE_POINTS_MAX = 20000; // a chart keeps at most this many readings, live ones included
const ALERTS_SHOWN = 100;
const DEVICES_REFRESH_MS = 30000;
const SLIDE_MS = 30000; // relative ranges move on with the clock
const EVENTS_RETRY_MS = 5000;
const ONLINE_MS = 2 * MINUTE; // a device seen this recently is sending

const el = {
  main: $('#main'),
  error: $('#error'),
  meName: $('#me-name'),
  signout: $('#signout-btn'),
  name: $('#patient-name'),
  meta: $('#patient-meta'),
  start: $('#start-consultation'),
  liveStatus: $('#live-status'),
  alerts: $('#alerts'),
  alertsEmpty: $('#alerts-empty'),
  devices: $('#devices'),
  devicesEmpty: $('#devices-empty'),
  devicesStatus: $('#devices-status'),
  enrollBtn: $('#enroll-btn'),
  enrollResult: $('#enroll-result'),
  enrollCode: $('#enroll-code'),
  enrollExpires: $('#enroll-expires'),
  enrollLink: $('#enroll-link'),
  enrollCommand: $('#enroll-command'),
  enrollCopy: $('#enroll-copy'),
  enrollCopyStatus: $('#enroll-copy-status'),
  rangeForm: $('#range-form'),
  range: $('#range'),
  customRange: $('#custom-range'),
  rangeFrom: $('#range-from'),
  rangeTo: $('#range-to'),
  rangeError: $('#range-error'),
  historyStatus: $('#history-status'),
  charts: $('#charts'),
  thresholds: $('#thresholds'),
  thresholdRows: $('#thresholds-rows'),
  thresholdsSave: $('#thresholds-save'),
  thresholdsStatus: $('#thresholds-status'),
};

const patientId = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const base = `/api/v1/patients/${encodeURIComponent(patientId)}`;
const alertList = new AlertList(el.alerts, { max: ALERTS_SHOWN, dated: true });

let thresholds = {};
/** @type {Map<string, object>} code -> history chart state */
const charts = new Map();
let view = { kind: '24h', from: 0, to: 0 };
let loadGeneration = 0;
let drawPending = 0;

// ---------- errors and sign-in ----------

function showError(err) {
  el.error.textContent = err ? err.message || String(err) : '';
}


function fail(err) {
  if (!toSignIn(err)) showError(err);
}

// ---------- the patient ----------

const birthFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' });

function describeBirth(birthDate) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(birthDate || '');
  if (!m) return '';
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const born = new Date(Date.UTC(y, mo - 1, d));
  if (Number.isNaN(born.getTime())) return '';
  const now = new Date();
  let age = now.getFullYear() - y;
  if (now.getMonth() + 1 < mo || (now.getMonth() + 1 === mo && now.getDate() < d)) age -= 1;
  return `Born ${birthFormat.format(born)}${age >= 0 && age < 150 ? ` (age ${age})` : ''}`;
}

async function loadPatient() {
  try {
    const p = await api('GET', base);
    el.name.textContent = p.name || 'Unnamed patient';
    document.title = `${p.name || 'Patient'} · telemed`;
    const meta = [describeBirth(p.birth_date)];
    if (p.created_at) meta.push(`Added ${formatDate(p.created_at)}`);
    el.meta.textContent = meta.filter(Boolean).join(' · ');
    return true;
  } catch (err) {
    if (toSignIn(err)) return false;
    if (err.status === 404) {
      el.name.textContent = 'Patient not found';
      el.meta.textContent = 'This patient does not exist, or is another provider’s.';
      for (const section of el.main.querySelectorAll('section:not(.patient-head)')) section.hidden = true;
      el.start.hidden = true;
      el.start.nextElementSibling.hidden = true;
      return false;
    }
    showError(err);
    return true;
  }
}

el.start.addEventListener('click', async () => {
  showError(null);
  el.start.disabled = true;
  try {
    const c = await api('POST', '/api/v1/consultations', { patient_id: patientId });
    location.assign(c.start_url);
  } catch (err) {
    el.start.disabled = false;
    fail(err);
  }
});

// ---------- devices and enrollment ----------

async function loadDevices() {
  el.devices.setAttribute('aria-busy', 'true');
  try {
    const data = await api('GET', `${base}/devices`);
    renderDevices((data && data.devices) || []);
  } catch (err) {
    fail(err);
  } finally {
    el.devices.setAttribute('aria-busy', 'false');
  }
}

function renderDevices(devices) {
  el.devicesEmpty.hidden = devices.length > 0;
  // Revoked ones last.
  const sorted = [...devices].sort((a, b) => Number(Boolean(a.revoked_at)) - Number(Boolean(b.revoked_at)));
  el.devices.replaceChildren(...sorted.map(renderDevice));
}

function renderDevice(d) {
  const name = d.name || 'Unnamed device';
  const revoked = Boolean(d.revoked_at);
  const seen = d.last_seen ? Date.parse(d.last_seen) : NaN;
  const online = !revoked && Number.isFinite(seen) && Date.now() - seen < ONLINE_MS;
  const meta = [`Enrolled ${formatDate(d.created_at)}`];
  meta.push(Number.isFinite(seen) ? `last seen ${formatDate(d.last_seen)}` : 'not seen yet');
  if (revoked) meta.push(`revoked ${formatDate(d.revoked_at)}`);

  let badge = null;
  if (revoked) badge = h('span', { class: 'badge badge-ended', text: 'Revoked' });
  else if (online) badge = h('span', { class: 'badge badge-open', text: 'Sending' });

  return h('li', {
    class: `device${revoked ? ' is-revoked' : ''}`,
    dataset: { deviceId: d.id, revoked: revoked ? 'true' : 'false' },
  },
  h('div', { class: 'device-main' },
    h('p', { class: 'device-name' }, h('span', { class: 'device-name-text', text: name }), badge),
    h('p', { class: 'device-meta', text: meta.join(' · ') })),
  revoked ? null : h('button', {
    type: 'button',
    class: 'btn btn-quiet btn-small revoke',
    text: 'Revoke',
    'aria-label': `Revoke ${name}`,
    onClick: (e) => revokeDevice(d, e.currentTarget),
  }));
}

async function revokeDevice(d, button) {
  button.disabled = true;
  el.devicesStatus.textContent = '';
  try {
    await api('DELETE', `/api/v1/devices/${encodeURIComponent(d.id)}`);
    el.devicesStatus.textContent = `${d.name || 'The device'} was revoked: it can no longer send readings.`;
    await loadDevices();
  } catch (err) {
    button.disabled = false;
    fail(err);
  }
}

// A command for a POSIX shell, the link in single quotes.
function shellQuote(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

el.enrollBtn.addEventListener('click', async () => {
  showError(null);
  el.enrollBtn.disabled = true;
  try {
    const e = await api('POST', `${base}/enrollments`, {});
    const link = typeof e.link === 'string' ? e.link : '';
    el.enrollCode.textContent = e.code || '';
    el.enrollExpires.textContent = formatDate(e.expires_at) || 'it expires';
    el.enrollLink.textContent = link;
    if (/^https?:\/\//i.test(link) || link.startsWith('/')) el.enrollLink.href = link;
    else el.enrollLink.removeAttribute('href');
    el.enrollCommand.textContent = `telemed device --enroll ${shellQuote(link || e.code || '')} --sim pulse-oximeter`;
    el.enrollCopyStatus.textContent = '';
    el.enrollResult.hidden = false;
    el.enrollBtn.textContent = 'Enroll another device';
    el.enrollResult.focus();
  } catch (err) {
    fail(err);
  } finally {
    el.enrollBtn.disabled = false;
  }
});

el.enrollCopy.addEventListener('click', async () => {
  if (await copyText(el.enrollCommand.textContent)) {
    el.enrollCopyStatus.textContent = 'Command copied.';
  } else {
    el.enrollCopyStatus.textContent = 'Your browser didn’t allow copying. The command is selected: copy it with Ctrl+C (⌘C on a Mac).';
    const range = document.createRange();
    range.selectNodeContents(el.enrollCommand);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
});

// ---------- alerts ----------

async function loadAlerts() {
  try {
    const data = await api('GET', `${base}/alerts?limit=${ALERTS_SHOWN}`);
    // Refilled as a whole (after a reconnect too): busy, so that screen readers do not announce
    // every alert again as if it were new.
    el.alerts.setAttribute('aria-busy', 'true');
    alertList.set((data && data.alerts) || []);
    el.alerts.setAttribute('aria-busy', 'false');
    el.alertsEmpty.hidden = alertList.size > 0;
  } catch (err) {
    fail(err);
  }
}

function onAlertEvent(a) {
  if (alertList.add(a)) el.alertsEmpty.hidden = true;
}

// ---------- live events ----------

let events = null;
let eventsOpened = false;
let eventsRetry = 0;

function setLive(state, text) {
  el.liveStatus.dataset.state = state;
  el.liveStatus.textContent = text;
}

function connectEvents() {
  clearTimeout(eventsRetry);
  if (events) events.close();
  const es = new EventSource(`${base}/events`);
  events = es;
  es.addEventListener('open', () => {
    setLive('live', 'Live');
    // Whatever happened while the stream was down.
    if (eventsOpened) {
      loadAlerts();
      loadHistory();
    }
    eventsOpened = true;
  });
  es.addEventListener('alert', (e) => {
    const data = parseEvent(e);
    if (data) onAlertEvent(data.alert && typeof data.alert === 'object' ? data.alert : data);
  });
  es.addEventListener('observation', (e) => {
    const data = parseEvent(e);
    if (data) onObservationEvent(data.observation && typeof data.observation === 'object' ? data.observation : data);
  });
  es.addEventListener('error', async () => {
    if (es !== events) return;
    if (es.readyState !== EventSource.CLOSED) {
      setLive('reconnecting', 'Reconnecting…');
      return;
    }
    // The browser gave up (an HTTP error): signed out, or the server is away.
    setLive('offline', 'Not live');
    try {
      await api('GET', '/api/v1/me');
    } catch (err) {
      if (toSignIn(err)) return;
    }
    eventsRetry = setTimeout(connectEvents, EVENTS_RETRY_MS);
  });
}

function parseEvent(e) {
  try {
    const data = JSON.parse(e.data);
    return data && typeof data === 'object' ? data : null;
  } catch {
    return null;
  }
}

// ---------- thresholds ----------

function renderThresholdRows() {
  el.thresholdRows.replaceChildren(...THRESHOLD_SIGNALS.map((s) => {
    const id = `th-${s.code}`;
    const input = (side) => h('div', { class: 'field threshold-field' },
      h('label', { for: `${id}-${side}`, text: side === 'low' ? 'Low' : 'High' }),
      h('input', {
        id: `${id}-${side}`,
        name: `${s.code}-${side}`,
        type: 'text',
        inputmode: 'decimal',
        autocomplete: 'off',
        'aria-describedby': `${id}-range ${id}-error`,
        dataset: { code: s.code, side },
      }));
    return h('fieldset', { class: 'threshold-row', dataset: { code: s.code } },
      h('legend', {}, s.name, ' ', h('span', { class: 'threshold-unit', text: s.unitDisplay })),
      input('low'),
      input('high'),
      h('p', { id: `${id}-range`, class: 'hint threshold-range', text: `Possible: ${s.min} to ${s.max}` }),
      h('p', { id: `${id}-error`, class: 'field-error threshold-error', hidden: true }));
  }));
}

function fillThresholds() {
  for (const s of THRESHOLD_SIGNALS) {
    const t = thresholds[s.code] || {};
    for (const side of ['low', 'high']) {
      const input = el.thresholds.querySelector(`input[name="${s.code}-${side}"]`);
      input.value = typeof t[side] === 'number' ? String(t[side]) : '';
      input.setAttribute('aria-invalid', 'false');
    }
    showRowError(s.code, '');
  }
}

function showRowError(code, text) {
  const p = $(`#th-${CSS.escape(code)}-error`);
  p.textContent = text;
  p.hidden = !text;
}

// Returns {value} (null for an empty box) or {problem}.
function parseBound(s, side, raw) {
  const text = raw.trim().replace(',', '.');
  if (text === '') return { value: null };
  if (!/^[-+]?(\d+\.?\d*|\.\d+)$/.test(text)) return { problem: `${s.name} ${side}: enter a number, such as ${side === 'low' ? s.min + 10 : s.max - 10}.` };
  const value = Number(text);
  if (value < s.min || value > s.max) {
    return { problem: `${s.name} ${side} must be between ${s.min} and ${s.max} ${s.unitDisplay}.` };
  }
  return { value };
}

// Check every row; mark the wrong boxes. Returns the thresholds to send, or null.
function readThresholds() {
  const out = {};
  let firstBad = null;
  for (const s of THRESHOLD_SIGNALS) {
    const problems = [];
    const values = {};
    for (const side of ['low', 'high']) {
      const input = el.thresholds.querySelector(`input[name="${s.code}-${side}"]`);
      const r = parseBound(s, side, input.value);
      input.setAttribute('aria-invalid', r.problem ? 'true' : 'false');
      if (r.problem) {
        problems.push(r.problem);
        firstBad = firstBad || input;
      } else {
        values[side] = r.value;
      }
    }
    if (!problems.length && values.low !== null && values.high !== null && values.low >= values.high) {
      problems.push(`${s.name}: the low value must be below the high value.`);
      for (const side of ['low', 'high']) {
        el.thresholds.querySelector(`input[name="${s.code}-${side}"]`).setAttribute('aria-invalid', 'true');
      }
      firstBad = firstBad || el.thresholds.querySelector(`input[name="${s.code}-low"]`);
    }
    showRowError(s.code, problems.join(' '));
    out[s.code] = { low: values.low ?? null, high: values.high ?? null };
  }
  if (firstBad) {
    firstBad.focus();
    return null;
  }
  return out;
}

function setThresholdsStatus(text, kind) {
  el.thresholdsStatus.textContent = text;
  el.thresholdsStatus.dataset.kind = kind || '';
}

async function loadThresholds() {
  try {
    const data = await api('GET', `${base}/thresholds`);
    thresholds = (data && data.thresholds) || {};
    fillThresholds();
    drawCharts();
  } catch (err) {
    fail(err);
  }
}

el.thresholds.addEventListener('submit', async (event) => {
  event.preventDefault();
  const values = readThresholds();
  if (!values) {
    setThresholdsStatus('Some values need fixing: see the messages above.', 'error');
    return;
  }
  el.thresholdsSave.disabled = true;
  setThresholdsStatus('Saving…', 'busy');
  try {
    const data = await api('PUT', `${base}/thresholds`, { thresholds: values });
    thresholds = (data && data.thresholds) || values;
    fillThresholds();
    drawCharts();
    setThresholdsStatus('Thresholds saved. New readings are checked against them.', 'ok');
  } catch (err) {
    if (toSignIn(err)) return;
    setThresholdsStatus(err.message, 'error');
  } finally {
    el.thresholdsSave.disabled = false;
  }
});

el.thresholds.addEventListener('input', (e) => {
  if (e.target.matches('input')) {
    e.target.setAttribute('aria-invalid', 'false');
    if (el.thresholdsStatus.dataset.kind !== 'busy') setThresholdsStatus('', '');
  }
});

// ---------- history ----------

function renderChartBoxes() {
  el.charts.replaceChildren(...SIGNALS.map((s) => {
    const ecg = s.code === ECG_CODE;
    const canvas = h('canvas', {
      class: `history-chart${ecg ? ' history-chart-ecg' : ''}`,
      dataset: { code: s.code, points: '0' },
      role: 'img',
      'aria-label': `${s.name}: loading`,
    });
    const latest = h('span', { class: 'history-latest' });
    const note = h('p', { class: 'history-note', hidden: true });
    const legend = s.kind === 'panel'
      ? h('span', { class: 'history-legend' },
        h('span', { class: 'legend-key legend-line', text: 'Systolic' }),
        h('span', { class: 'legend-key legend-line-2', text: 'Diastolic' }))
      : null;
    const box = h('figure', { class: 'history-box', dataset: { code: s.code } },
      h('figcaption', { class: 'history-caption' },
        h('span', { class: 'history-name', text: ecg ? 'ECG (lead I), last minute of the range' : s.name }),
        h('span', { class: 'history-unit', text: s.unitDisplay }),
        legend,
        latest),
      canvas,
      note);
    charts.set(s.code, { signal: s, box, canvas, latest, note, data: null, truncated: false, samples: 0 });
    return box;
  }));
}

function currentRange() {
  if (view.kind === 'custom') return { from: view.from, to: view.to };
  const to = Date.now();
  return { from: to - RANGES[view.kind], to };
}

function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * MINUTE);
  return d.toISOString().slice(0, 16);
}

function showRangeError(text) {
  el.rangeError.textContent = text;
  el.rangeError.hidden = !text;
}

function readCustomRange() {
  const from = el.rangeFrom.value ? new Date(el.rangeFrom.value).getTime() : NaN;
  const to = el.rangeTo.value ? new Date(el.rangeTo.value).getTime() : NaN;
  el.rangeFrom.setAttribute('aria-invalid', String(!Number.isFinite(from)));
  el.rangeTo.setAttribute('aria-invalid', String(!Number.isFinite(to)));
  if (!Number.isFinite(from) || !Number.isFinite(to)) {
    showRangeError('Enter both the start and the end of the range.');
    return null;
  }
  if (from >= to) {
    el.rangeTo.setAttribute('aria-invalid', 'true');
    showRangeError('The end of the range must be after its start.');
    return null;
  }
  showRangeError('');
  return { from, to };
}

el.range.addEventListener('change', () => {
  const kind = el.range.value;
  el.customRange.hidden = kind !== 'custom';
  if (kind === 'custom') {
    // Start from what is shown now.
    const { from, to } = currentRange();
    if (!el.rangeFrom.value) el.rangeFrom.value = toLocalInput(from);
    if (!el.rangeTo.value) el.rangeTo.value = toLocalInput(to);
    el.rangeFrom.focus();
    return;
  }
  showRangeError('');
  view = { kind, from: 0, to: 0 };
  loadHistory();
});

el.rangeForm.addEventListener('submit', (e) => {
  e.preventDefault();
  if (el.range.value !== 'custom') return;
  const r = readCustomRange();
  if (!r) return;
  view = { kind: 'custom', ...r };
  loadHistory();
});

function readingTime(o) {
  const t = typeof o.time === 'string' ? Date.parse(o.time) : NaN;
  return Number.isFinite(t) ? t : NaN;
}

function componentValue(o, code) {
  const c = Array.isArray(o.components) ? o.components.find((x) => x && x.code === code) : null;
  return c && typeof c.value === 'number' ? c.value : NaN;
}

function addObservation(series, s, o) {
  const t = readingTime(o);
  if (!Number.isFinite(t)) return false;
  if (s.kind === 'panel') {
    series.push(t, componentValue(o, s.components[0].code), componentValue(o, s.components[1].code));
  } else if (typeof o.value === 'number') {
    series.push(t, o.value);
  } else {
    return false;
  }
  return true;
}

async function loadSignal(chart, from, to, generation) {
  const s = chart.signal;
  const ecg = s.code === ECG_CODE;
  const qFrom = ecg ? Math.max(from, to - ECG_STRIP_MS) : from;
  const query = new URLSearchParams({ code: s.code, from: new Date(qFrom).toISOString(), to: new Date(to).toISOString() });
  const data = await api('GET', `${base}/observations?${query}`);
  if (generation !== loadGeneration) return;
  const list = (data && Array.isArray(data.observations)) ? data.observations : [];
  chart.truncated = Boolean(data && data.truncated);
  if (ecg) {
    let total = 0;
    for (const o of list) if (Array.isArray(o.samples)) total += o.samples.length;
    const series = new Series(Math.max(total, 1), 1);
    let count = 0;
    for (const o of list) {
      const t = readingTime(o);
      const period = typeof o.period_ms === 'number' && o.period_ms > 0 ? o.period_ms : 4;
      if (!Number.isFinite(t) || !Array.isArray(o.samples)) continue;
      o.samples.forEach((v, i) => series.push(t + i * period, typeof v === 'number' ? v : NaN));
      count += 1;
    }
    chart.data = series;
    chart.readings = count;
    chart.samples = total;
    chart.from = qFrom;
  } else {
    const series = new Series(Math.min(LIVE_POINTS_MAX, Math.max(2000, list.length * 2)), s.kind === 'panel' ? 2 : 1);
    for (const o of list) addObservation(series, s, o);
    chart.data = series;
  }
}

async function loadHistory() {
  const generation = ++loadGeneration;
  const { from, to } = currentRange();
  el.historyStatus.textContent = 'Loading readings…';
  el.charts.setAttribute('aria-busy', 'true');
  const results = await Promise.allSettled([...charts.values()].map((c) => loadSignal(c, from, to, generation)));
  if (generation !== loadGeneration) return;
  el.charts.setAttribute('aria-busy', 'false');
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    if (toSignIn(failed.reason)) return;
    el.historyStatus.textContent = '';
    showError(failed.reason);
  } else {
    el.historyStatus.textContent = view.kind === 'custom'
      ? `From ${formatDate(new Date(from).toISOString())} to ${formatDate(new Date(to).toISOString())}.`
      : 'New readings appear as they arrive.';
  }
  drawCharts();
}

function limitsFor(s) {
  const line = (code, side, prefix, align) => {
    const t = thresholds[code];
    const v = t && typeof t[side] === 'number' ? t[side] : null;
    if (v === null) return null;
    return { value: v, kind: side, align, label: `${prefix}${side} ${limitText(code, v)}` };
  };
  if (s.kind === 'panel') {
    return [
      line(s.components[0].code, 'low', 'systolic '), line(s.components[0].code, 'high', 'systolic '),
      line(s.components[1].code, 'low', 'diastolic ', 'right'), line(s.components[1].code, 'high', 'diastolic ', 'right'),
    ].filter(Boolean);
  }
  if (s.kind === 'value') return [line(s.code, 'low', ''), line(s.code, 'high', '')].filter(Boolean);
  return [];
}

function drawChart(chart) {
  const s = chart.signal;
  if (!chart.data) return;
  const range = currentRange();
  const ecg = s.code === ECG_CODE;
  const from = ecg ? Math.max(range.from, range.to - ECG_STRIP_MS) : range.from;
  const to = range.to;
  const series = s.kind === 'panel'
    ? [{ data: chart.data, field: 0 }, { data: chart.data, field: 1, color: 'line2' }]
    : [{ data: chart.data }];
  const points = drawTimeSeries(chart.canvas, {
    series,
    from,
    to,
    limits: limitsFor(s),
    bands: s.kind !== 'panel',
    minSpan: ecg ? 1.5 : s.minSpan,
    gapMs: ecg ? 50 : Math.max((to - from) / 50, 5 * MINUTE),
    empty: ecg ? 'No ECG in this minute' : 'No readings in this range',
  });
  const readings = ecg ? chart.readings : points;
  chart.canvas.dataset.points = String(readings);
  if (ecg) chart.canvas.dataset.samples = String(points);
  chart.canvas.setAttribute('aria-label', describeChart(chart, readings, from, to));

  // The latest value, in words beside the name.
  const n = chart.data.length;
  if (!ecg && n) {
    const i = n - 1;
    const t = chart.data.time(i);
    const text = s.kind === 'panel'
      ? `${formatValue(s, chart.data.value(i, 0))}/${formatValue(s, chart.data.value(i, 1))}`
      : formatValue(s, chart.data.value(i, 0));
    chart.latest.textContent = `Latest ${text} ${s.unitDisplay}, ${formatDate(new Date(t).toISOString())}`;
  } else {
    chart.latest.textContent = '';
  }
  const notes = [];
  if (chart.truncated) notes.push('This range has more readings than can be shown at once: only the latest are drawn. Choose a shorter range to see the earlier ones.');
  chart.note.textContent = notes.join(' ');
  chart.note.hidden = notes.length === 0;
}

function describeChart(chart, readings, from, to) {
  const s = chart.signal;
  if (!readings) return `${s.name}: no readings in this range`;
  if (s.code === ECG_CODE) return `${s.name}: ${readings} pieces of trace in the minute up to ${formatDate(new Date(to).toISOString())}`;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < chart.data.length; i += 1) {
    const t = chart.data.time(i);
    if (t < from || t > to) continue;
    const v = chart.data.value(i, 0);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const what = s.kind === 'panel' ? 'systolic' : '';
  return `${s.name}: ${readings} readings; ${what ? `${what} ` : ''}lowest ${formatValue(s, lo)}, highest ${formatValue(s, hi)} ${s.unitDisplay}`;
}

function drawCharts() {
  if (drawPending) return;
  drawPending = requestAnimationFrame(() => {
    drawPending = 0;
    for (const chart of charts.values()) drawChart(chart);
  });
}

function onObservationEvent(o) {
  if (!o || typeof o.code !== 'string') return;
  const code = o.code === '59408-5' ? '2708-6' : o.code;
  const chart = charts.get(code);
  if (!chart || !chart.data || code === ECG_CODE) return;
  const t = readingTime(o);
  const { from, to } = currentRange();
  // A custom range is a record of the past; the relative ones take what is new.
  if (view.kind === 'custom' && (t < from || t > to)) return;
  if (addObservation(chart.data, chart.signal, o)) drawCharts();
}

// ---------- start ----------



(async () => {
  renderThresholdRows();
  renderChartBoxes();
  if (!patientId) {
    showError(new Error('This page needs a patient: open it from your dashboard.'));
    return;
  }
  if (!(await account(el.meName, el.signout, showError))) return;
  const found = await loadPatient();
  el.main.setAttribute('aria-busy', 'false');
  if (!found) return;
  connectEvents();
  await Promise.all([loadDevices(), loadAlerts(), loadThresholds(), loadHistory()]);

  // Charts follow the page's width.
  if (typeof ResizeObserver === 'function') new ResizeObserver(() => drawCharts()).observe(el.charts);
  setInterval(() => {
    if (document.visibilityState === 'visible' && view.kind !== 'custom') drawCharts();
  }, SLIDE_MS);
  setInterval(() => {
    if (document.visibilityState === 'visible') loadDevices();
  }, DEVICES_REFRESH_MS);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') loadDevices();
  });
  window.addEventListener('pagehide', () => { if (events) events.close(); });
})();

/** A threshold as the provider set it: 99.9 stays 99.9, where a reading would be shown as 100. */
function limitText(code, v) {
  const shown = formatValue(signalOf(code), v);
  return Number(shown) === v ? shown : String(Math.round(v * 1000) / 1000);
}
