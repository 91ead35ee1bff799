// Call quality and bandwidth in a mesh: what getStats says about each peer connection, in words,
// and the caps each sender puts on its outgoing video as the call grows (docs/benchmarks.md#group-visits).

/**
 * Outgoing video caps per connection by the number of people in the call, so that a 4-person visit
 * (3 connections per sender) fits a 3 Mbit/s uplink. `camera`/`screen` are maxBitrate in bit/s;
 * `scale` is the camera's scaleResolutionDownBy. While sharing, the camera gives way to the screen.
 */
export const VIDEO_CAPS = {
  2: { camera: 1_500_000, scale: 1, sharingCamera: 500_000, screen: 1_200_000 },
  3: { camera: 1_000_000, scale: 1, sharingCamera: 300_000, screen: 700_000 },
  4: { camera: 600_000, scale: 1.5, sharingCamera: 250_000, screen: 500_000 },
  5: { camera: 450_000, scale: 2, sharingCamera: 150_000, screen: 400_000 },
  6: { camera: 350_000, scale: 2, sharingCamera: 120_000, screen: 300_000 },
};

/** The caps for a call of `people` people (2 to 6); `sharing` when this sender shares a screen. */
export function capsFor(people, sharing) {
  const n = Math.min(6, Math.max(2, people || 2));
  const c = VIDEO_CAPS[n];
  return {
    camera: { maxBitrate: sharing ? c.sharingCamera : c.camera, scaleResolutionDownBy: sharing ? Math.max(2, c.scale) : c.scale },
    screen: { maxBitrate: c.screen },
  };
}

// Thresholds of the words. Round trip and jitter in ms, loss in percent, bitrate in bit/s.
const POOR = { rtt: 400, loss: 8, jitter: 80, out: 150_000 };
const FAIR = { rtt: 200, loss: 2, jitter: 30, out: 400_000 };

/** good, fair or poor, from figures of one connection (missing figures do not count). */
export function qualityWord(m) {
  const over = (limits) => (m.rttMs != null && m.rttMs > limits.rtt)
    || (m.lossPct != null && m.lossPct > limits.loss)
    || (m.jitterMs != null && m.jitterMs > limits.jitter)
    || (m.outBitrate != null && m.outBitrate < limits.out);
  if (over(POOR)) return 'poor';
  if (over(FAIR)) return 'fair';
  return 'good';
}

/**
 * Measures one peer connection. `prev` is the previous result for the same connection (loss is
 * counted over the interval between them). Resolves with round trip, loss, jitter, the estimated
 * outgoing bitrate, the selected candidate types and the word.
 */
export async function measure(pc, prev = null) {
  const report = await pc.getStats();
  let pair = null;
  const byId = new Map();
  let received = 0;
  let lost = 0;
  let jitter = null;
  let remoteLoss = null;
  report.forEach((s) => {
    byId.set(s.id, s);
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = s.selectedCandidatePairId;
  });
  report.forEach((s) => {
    if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s.id;
    if (s.type === 'inbound-rtp') {
      received += s.packetsReceived || 0;
      lost += Math.max(0, s.packetsLost || 0);
      if (s.kind === 'audio' && typeof s.jitter === 'number') jitter = s.jitter * 1000;
    }
    if (s.type === 'remote-inbound-rtp' && typeof s.fractionLost === 'number') {
      remoteLoss = Math.max(remoteLoss ?? 0, s.fractionLost * 100);
    }
  });
  const p = pair ? byId.get(pair) : null;
  const local = p ? byId.get(p.localCandidateId) : null;
  const remote = p ? byId.get(p.remoteCandidateId) : null;
  const m = {
    at: Date.now(),
    received,
    lost,
    rttMs: p && typeof p.currentRoundTripTime === 'number' ? Math.round(p.currentRoundTripTime * 1000) : null,
    jitterMs: jitter != null ? Math.round(jitter) : null,
    outBitrate: p && typeof p.availableOutgoingBitrate === 'number' ? Math.round(p.availableOutgoingBitrate) : null,
    lossPct: null,
    sentLossPct: remoteLoss != null ? Math.round(remoteLoss * 10) / 10 : null,
    localType: local ? local.candidateType : '',
    remoteType: remote ? remote.candidateType : '',
    relayProtocol: local && local.relayProtocol ? local.relayProtocol : '',
  };
  if (prev) {
    const dr = received - prev.received;
    const dl = lost - prev.lost;
    if (dr + dl > 0) m.lossPct = Math.round((1000 * dl) / (dr + dl)) / 10;
  }
  m.word = p ? qualityWord({ ...m, lossPct: Math.max(m.lossPct ?? 0, m.sentLossPct ?? 0) }) : '';
  return m;
}

/** The figures of a measurement in a line, for "show figures". */
export function describe(m) {
  if (!m) return 'No figures yet.';
  const parts = [];
  if (m.rttMs != null) parts.push(`round trip ${m.rttMs} ms`);
  if (m.lossPct != null) parts.push(`loss ${m.lossPct}%`);
  if (m.jitterMs != null) parts.push(`jitter ${m.jitterMs} ms`);
  if (m.outBitrate != null) parts.push(`outgoing ${(m.outBitrate / 1e6).toFixed(2)} Mbit/s available`);
  if (m.localType) parts.push(m.localType === 'relay' ? `through the relay (${m.relayProtocol || 'udp'})` : 'direct');
  return parts.length ? parts.join(', ') : 'No figures yet.';
}

/**
 * Whether one's own connection is the weak one: every connected peer sees a poor line, or the
 * outgoing estimate is below what even one small video needs.
 */
export function ownConnectionWeak(measurements) {
  const live = measurements.filter((m) => m && m.word);
  if (live.length === 0) return false;
  if (live.every((m) => m.word === 'poor')) return true;
  return live.every((m) => m.outBitrate != null && m.outBitrate < POOR.out);
}
