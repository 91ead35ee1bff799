// "Test my connection" on the device check page, and the end-of-call quality summary, both kept
// with the visit for support (docs/api.md#call-quality).
//
// The test asks the server for ICE servers (GET /api/v1/consultations/{id}/ice-servers with the
// page's link token) and checks, one step after the other, each bounded in time:
//   1. STUN: a peer connection with only the STUN server gathers a server-reflexive candidate, which
//      means a public address was found (only its family is kept, never the address);
//   2. TURN over UDP: with iceTransportPolicy "relay" and only the turn:...?transport=udp URL, a
//      relayed candidate means an allocation worked;
//   3. TURN over TCP, and over TLS when the server offers turns:, the same way;
//   4. two peer connections in this page, both relay-only through the first transport that worked,
//      connected to each other: a data channel measures the round trip (median of 10 pings) and the
//      throughput (2 s of sending, with bufferedAmount flow control).
// It then says in words what a call will do, shows the figures on demand, and posts the result
// (kind "precall") to /api/v1/consultations/{id}/quality.
//
// This module reads the consultation and token from the page URL itself (/c/{id}#t=TOKEN); it
// shares nothing with call.js but the page.

import { $, h, tokenFromHash } from './dom.js';

const GATHER_MS = 5000; // a STUN answer or a TURN allocation takes milliseconds; 5 s is a dead path
const CONNECT_MS = 8000; // the loop's two peer connections, through the relay
const PING_MS = 2000;
const PINGS = 10;
const SEND_MS = 2000;
const DRAIN_MS = 3000;
const CHUNK = 16 * 1024;
const HIGH_WATER = 1024 * 1024;

// Below these, a call's video suffers: one 720p stream wants about 1.5 Mbit/s, audio 50 kbit/s.
const SLOW_KBPS = 500;
const SLOW_RTT_MS = 400;

/** The consultation id and link token of this page (/c/{id}#t=TOKEN). */
function pageLink() {
  return {
    consultationId: decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || ''),
    token: tokenFromHash(),
  };
}

/**
 * POST a JSON body with the link token; keepalive, so that a summary sent as the page closes still
 * goes. Resolves with the answer's JSON, rejects with an Error whose message is the server's.
 */
async function postJSON(path, token, body) {
  const res = await fetch(path, {
    method: 'POST',
    keepalive: true,
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const e = data && data.error;
    const err = new Error((e && e.message) || `HTTP ${res.status}`);
    err.code = (e && e.code) || `http_${res.status}`;
    throw err;
  }
  return data;
}

/**
 * Keep one person's summary of a call's quality with the visit: call it at the end of a call.
 *
 * @param {string} consultationId the consultation (from the page URL /c/{id})
 * @param {string} token the page's link token (from #t=)
 * @param {{
 *   duration_s?: number|null,            // how long the call lasted, seconds
 *   peers: Array<{                        // 1 to 8: each other participant, from getStats at the end
 *     role: 'provider'|'patient'|'guest'|'clinician',
 *     name?: string,                      // as signaling named them, at most 80 characters
 *     path?: 'direct'|'relay'|'',         // the selected candidate pair
 *     rtt_ms?: number|null,               // candidate-pair currentRoundTripTime × 1000
 *     loss_pct?: number|null,             // inbound packets lost, 0 to 100
 *     jitter_ms?: number|null,            // inbound-rtp jitter × 1000
 *     outgoing_kbps?: number|null,        // candidate-pair availableOutgoingBitrate / 1000
 *     quality: 'good'|'fair'|'poor',      // the word the page showed
 *   }>,
 * }} summary
 * @returns {Promise<object>} the report as kept (docs/api.md#call-quality); rejects with an Error
 *   carrying the server's message and `code` (bad_field names the field at fault).
 *
 * peerSummary(peer, measurement) builds one entry of `peers` from a quality.js measurement.
 */
export async function postCallQuality(consultationId, token, summary) {
  return postJSON(`/api/v1/consultations/${encodeURIComponent(consultationId)}/quality`, token, { kind: 'call', call: summary });
}

/**
 * One entry of a summary's `peers`, from what the call page knows of a peer and a measurement of its
 * connection in the shape of quality.js's measure() ({rttMs, lossPct, sentLossPct, jitterMs,
 * outBitrate (bit/s), localType, remoteType, word}). A connection never measured counts as poor.
 *
 * @param {{role: string, name?: string}} peer
 * @param {object|null} m
 */
export function peerSummary(peer, m) {
  const num = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);
  const loss = [num(m && m.lossPct), num(m && m.sentLossPct)].filter((v) => v !== null);
  const path = !m || !m.localType ? '' : m.localType === 'relay' || m.remoteType === 'relay' ? 'relay' : 'direct';
  return {
    role: peer.role,
    name: Array.from(String(peer.name || '')).slice(0, 80).join(''), // code points, as the server counts
    path,
    rtt_ms: num(m && m.rttMs),
    loss_pct: loss.length ? Math.min(100, Math.max(...loss)) : null,
    jitter_ms: num(m && m.jitterMs),
    outgoing_kbps: num(m && m.outBitrate) === null ? null : Math.round(m.outBitrate / 1000),
    quality: m && ['good', 'fair', 'poor'].includes(m.word) ? m.word : 'poor',
  };
}

/** Resolve with what p resolves to, or with fallback after ms. */
function within(p, ms, fallback) {
  let timer;
  return Promise.race([p, new Promise((resolve) => { timer = setTimeout(() => resolve(fallback), ms); })])
    .finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * The server's ICE servers, one URL each, sorted by what they test: the first of each kind
 * (telemed's own relay comes first in the list the server gives).
 */
function sortServers(list) {
  const out = { stun: null, udp: null, tcp: null, tls: null };
  for (const s of list || []) {
    for (const url of [].concat(s.urls || [])) {
      const one = { urls: url, username: s.username, credential: s.credential };
      let kind = '';
      if (url.startsWith('stun:')) kind = 'stun';
      else if (url.startsWith('turns:')) kind = 'tls';
      else if (url.startsWith('turn:')) kind = /[?&]transport=tcp\b/i.test(url) ? 'tcp' : 'udp';
      if (kind && !out[kind]) out[kind] = kind === 'stun' ? { urls: url } : one;
    }
  }
  return out;
}

/**
 * Gather candidates with one ICE server and resolve with the first of the wanted type ("srflx" or
 * "relay"), or null when gathering ends or the time is up without one.
 */
async function gather(server, wanted, relayOnly) {
  const pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: relayOnly ? 'relay' : 'all' });
  try {
    const found = new Promise((resolve) => {
      pc.onicecandidate = (e) => {
        if (!e.candidate) resolve(null);
        else if (e.candidate.type === wanted) resolve(e.candidate);
      };
    });
    pc.createDataChannel('probe');
    await pc.setLocalDescription(await pc.createOffer());
    return await within(found, GATHER_MS, null);
  } finally {
    pc.close();
  }
}

/** Pass a's candidates to b, holding them until b has a remote description; returns the flush. */
function trickle(a, b) {
  const held = [];
  a.onicecandidate = (e) => {
    if (!e.candidate) return;
    if (b.remoteDescription) b.addIceCandidate(e.candidate).catch(() => {});
    else held.push(e.candidate);
  };
  return () => { for (const c of held.splice(0)) b.addIceCandidate(c).catch(() => {}); };
}

/** Wait for the next message on ch that matches, or null after ms. */
function nextMessage(ch, match, ms) {
  return within(new Promise((resolve) => {
    const onMessage = (e) => {
      if (match(e.data)) { ch.removeEventListener('message', onMessage); resolve(e.data); }
    };
    ch.addEventListener('message', onMessage);
  }), ms, null);
}

/**
 * Two relay-only peer connections in this page, through server, connected to each other: resolve
 * with the round trip (ms, median) and throughput (kbit/s) of a data channel between them, or
 * reject if they do not connect.
 */
async function loop(server) {
  const config = { iceServers: [server], iceTransportPolicy: 'relay' };
  const a = new RTCPeerConnection(config);
  const b = new RTCPeerConnection(config);
  try {
    const flushToB = trickle(a, b);
    const flushToA = trickle(b, a);
    const tx = a.createDataChannel('precall', { ordered: true });
    tx.binaryType = 'arraybuffer';
    const rxReady = new Promise((resolve) => { b.ondatachannel = (e) => resolve(e.channel); });
    const open = new Promise((resolve) => { tx.onopen = resolve; });
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    flushToB();
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    flushToA();
    const rx = await within(Promise.all([rxReady, open]).then(([ch]) => ch), CONNECT_MS, null);
    if (!rx) throw new Error('the two test connections did not meet through the relay');
    rx.binaryType = 'arraybuffer';
    let received = 0;
    let lastAt = 0;
    rx.onmessage = (e) => {
      if (typeof e.data === 'string') { rx.send(e.data); return; } // a ping: echo it
      received += e.data.byteLength;
      lastAt = performance.now();
    };
    return { rttMs: await roundTrip(tx), kbps: await throughput(tx, () => [received, lastAt]) };
  } finally {
    a.close();
    b.close();
  }
}

/** The median of PINGS round trips of a small message, in ms; null if none came back. */
async function roundTrip(tx) {
  const times = [];
  for (let i = 0; i < PINGS; i++) {
    const ping = `ping ${i}`;
    const t0 = performance.now();
    tx.send(ping);
    if (await nextMessage(tx, (d) => d === ping, PING_MS) !== null) times.push(performance.now() - t0);
  }
  if (!times.length) return null;
  times.sort((x, y) => x - y);
  const mid = times.length >> 1;
  return times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
}

/** Send for SEND_MS as fast as the channel takes it; kbit/s of what arrived, by arrival time. */
async function throughput(tx, progress) {
  const chunk = new Uint8Array(CHUNK);
  tx.bufferedAmountLowThreshold = HIGH_WATER / 4;
  const start = performance.now();
  let sent = 0;
  while (performance.now() - start < SEND_MS) {
    if (tx.bufferedAmount > HIGH_WATER) {
      await within(new Promise((resolve) => { tx.onbufferedamountlow = resolve; }), 100, null);
      continue;
    }
    tx.send(chunk);
    sent += CHUNK;
  }
  const drainUntil = performance.now() + DRAIN_MS;
  while (progress()[0] < sent && performance.now() < drainUntil) await sleep(20);
  const [received, lastAt] = progress();
  if (!received || lastAt <= start) return null;
  return Math.round((received * 8) / (lastAt - start)); // bits per ms = kbit/s
}

/** Run the whole test, calling onStep(n, what) as it goes (n of 4). Resolves with the result as posted. */
async function runTest(servers, onStep) {
  const s = sortServers(servers);
  const r = { stun: false, public_address: '', udp: false, tcp: false, tls: s.tls ? false : null, relay: '', rtt_ms: null, throughput_kbps: null };
  const detail = { offered: Boolean(s.udp || s.tcp || s.tls), loopError: '', host: '' };
  onStep(1, 'looking for your public address');
  if (s.stun) {
    const c = await gather(s.stun, 'srflx', false);
    if (c) {
      r.stun = true;
      r.public_address = String(c.address || '').includes(':') ? 'ipv6' : 'ipv4';
    }
  }
  onStep(2, 'reaching the relay over UDP');
  if (s.udp) r.udp = Boolean(await gather(s.udp, 'relay', true));
  onStep(3, s.tls ? 'reaching the relay over TCP and TLS' : 'reaching the relay over TCP');
  if (s.tcp) r.tcp = Boolean(await gather(s.tcp, 'relay', true));
  if (s.tls) r.tls = Boolean(await gather(s.tls, 'relay', true));
  detail.host = hostOf((s.udp || s.tcp || s.tls || s.stun || { urls: '' }).urls);
  onStep(4, 'measuring speed through the relay');
  const via = ['udp', 'tcp', 'tls'].find((k) => r[k]);
  if (via) {
    try {
      const m = await loop(s[via]);
      r.relay = via;
      r.rtt_ms = m.rttMs === null ? null : Math.round(m.rttMs * 10) / 10;
      r.throughput_kbps = m.kbps;
    } catch (err) {
      detail.loopError = err.message;
    }
  }
  return { ...r, ...judge(r, detail) };
}

/** The host (and port) of an ICE server URL, for words a person can pass on to their IT people. */
function hostOf(url) {
  return String(url).replace(/^[a-z]+:/, '').replace(/\?.*$/, '');
}

/** What the result means, as a verdict word and in words. */
function judge(r, detail) {
  const over = { udp: 'UDP', tcp: 'TCP', tls: 'TLS' };
  const slow = r.relay && ((r.throughput_kbps !== null && r.throughput_kbps < SLOW_KBPS) || (r.rtt_ms !== null && r.rtt_ms > SLOW_RTT_MS));
  const slowWords = 'Your connection is slow: video may freeze. Closing other programs that use the internet, or moving closer to the Wi-Fi router, may help.';
  if (!detail.offered) {
    return r.stun
      ? { verdict: 'good', words: 'Your connection reached the server. This server has no relay, so the call will connect directly.' }
      : { verdict: 'no_relay', words: 'No connection to the server’s STUN service, and this server has no relay: the call may not connect from this network.' };
  }
  if (!r.relay) {
    const why = r.udp || r.tcp || r.tls
      ? 'the relay answered, but no connection went through it'
      : `it could not be reached over UDP, TCP${r.tls === null ? '' : ' or TLS'}`;
    return { verdict: 'no_relay', words: `No connection to the relay: ${why}. A firewall on this network may block it: try another network (a phone’s mobile data, say), or ask the network’s administrator to allow ${detail.host}.` };
  }
  if (!r.udp) {
    return { verdict: 'udp_blocked', words: `UDP is blocked on your network; the call will use the relay over ${over[r.relay]}.${slow ? ` ${slowWords}` : ''}` };
  }
  if (slow) return { verdict: 'slow', words: slowWords };
  return { verdict: 'good', words: 'Your connection is good: the call should work well.' };
}

// ---------- the page ----------

const yesNo = (v, yes, no) => (v === null ? 'not offered by this server' : v ? yes : no);

/** The figures, as a list for the <details>. */
function figures(r) {
  const rows = [
    ['Public address found (STUN)', r.stun ? `yes (${r.public_address === 'ipv6' ? 'IPv6' : 'IPv4'})` : 'no'],
    ['Relay over UDP', yesNo(r.udp, 'works', 'blocked')],
    ['Relay over TCP', yesNo(r.tcp, 'works', 'blocked')],
    ['Relay over TLS', yesNo(r.tls, 'works', 'blocked')],
    ['Round trip through the relay', r.rtt_ms === null ? '—' : `${r.rtt_ms} ms`],
    ['Throughput through the relay', r.throughput_kbps === null ? '—'
      : r.throughput_kbps >= 1000 ? `${(r.throughput_kbps / 1000).toFixed(1)} Mbit/s` : `${r.throughput_kbps} kbit/s`],
  ];
  return h('dl', { class: 'connection-figures' }, rows.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })]));
}

function show(region, verdict, ...children) {
  region.replaceChildren(...children);
  region.className = `connection-result notice${verdict === 'good' || verdict === '' ? '' : ' notice-warning'}`;
  region.dataset.verdict = verdict;
}

async function testConnection(button, region) {
  const { consultationId, token } = pageLink();
  if (!consultationId || !token) return;
  button.disabled = true;
  delete region.dataset.saved;
  const path = `/api/v1/consultations/${encodeURIComponent(consultationId)}`;
  try {
    show(region, '', h('p', { text: 'Testing… getting ready' }));
    const res = await fetch(`${path}/ice-servers`, { headers: { Accept: 'application/json', Authorization: `Bearer ${token}` } });
    const data = await res.json().catch(() => null);
    if (!res.ok || !data) throw new Error((data && data.error && data.error.message) || `HTTP ${res.status}`);
    const r = await runTest(data.ice_servers, (n, what) => show(region, '', h('p', { text: `Testing… ${n} of 4: ${what}` })));
    show(region, r.verdict, h('p', { class: 'connection-words', text: r.words }),
      h('details', {}, h('summary', { text: 'Show the figures' }), figures(r)));
    try {
      await postJSON(`${path}/quality`, token, { kind: 'precall', precall: r });
      region.dataset.saved = 'true';
    } catch (err) {
      region.dataset.saved = 'false';
      region.append(h('p', { class: 'hint', text: `The result could not be kept for your clinic: ${err.message}` }));
    }
  } catch (err) {
    show(region, 'error', h('p', { text: `The test could not run: ${err.message}` }));
  } finally {
    button.disabled = false;
    button.textContent = 'Test again';
  }
}

function init() {
  const button = $('#test-connection');
  const region = $('#connection-result');
  if (!button || !region) return;
  if (typeof RTCPeerConnection === 'undefined') {
    button.disabled = true;
    show(region, 'error', h('p', { text: 'This browser cannot make video calls (no WebRTC): try an up-to-date Chrome, Edge, Firefox or Safari.' }));
    return;
  }
  button.addEventListener('click', () => testConnection(button, region));
}

init();
