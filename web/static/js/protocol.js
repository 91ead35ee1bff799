// Signaling client for telemed, protocol version 1 (docs/signaling.md).
//
// No DOM access here: the class only needs WebSocket, EventTarget and timers,
// so it can be reused by other pages or driven from tests with a fake socket.

export const PROTOCOL_VERSION = 1;

// Errors after which the server closes the socket and a retry cannot help.
export const FATAL_CODES = new Set([
  'bad_token',
  'link_expired',
  'wrong_consultation',
  'consultation_ended',
  'unsupported_version',
  'waiting_room_full',
]);

// Every server message type this client understands; each becomes an event.
export const SERVER_TYPES = [
  'welcome', 'lobby', 'admitted', 'declined', 'peer_joined', 'peer_left',
  'offer', 'answer', 'candidate', 'error', 'pong',
  // To providers in a consultation of a patient: a reading crossed a threshold (docs/monitoring.md).
  'alert',
  // Group visits: a person's media state, a removal, leave to share a screen.
  'media', 'removed', 'share_allowed',
];

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];
const PING_INTERVAL_MS = 20000;
// The server's own WebSocket pings never reach script, so our app-level
// ping/pong is what proves the line is alive. Two missed pongs and a bit: dead.
const SILENCE_LIMIT_MS = 50000;
// After `leave` the server closes the socket; close it ourselves if it doesn't.
const LEAVE_CLOSE_MS = 1000;
// A socket that has not opened by then is given up and retried.
const CONNECT_TIMEOUT_MS = 10000;
// Outgoing messages kept while reconnecting (a burst of ICE candidates fits).
const MAX_QUEUE = 500;

export function defaultSignalingUrl(loc = globalThis.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

// RTCIceCandidateInit (camelCase) -> wire format (snake_case).
// Returns null when the candidate cannot be expressed on the wire
// (the protocol needs sdp_mid or sdp_mline_index).
export function candidateToWire(init) {
  if (!init) return null;
  const wire = { candidate: init.candidate ?? '' };
  if (init.sdpMid != null) wire.sdp_mid = init.sdpMid;
  if (init.sdpMLineIndex != null) wire.sdp_mline_index = init.sdpMLineIndex;
  if (init.usernameFragment != null) wire.username_fragment = init.usernameFragment;
  if (wire.sdp_mid === undefined && wire.sdp_mline_index === undefined) return null;
  return wire;
}

// Wire format -> RTCIceCandidateInit.
export function candidateFromWire(wire) {
  const w = wire || {};
  return {
    candidate: typeof w.candidate === 'string' ? w.candidate : '',
    sdpMid: w.sdp_mid ?? null,
    sdpMLineIndex: w.sdp_mline_index ?? null,
    usernameFragment: w.username_fragment ?? null,
  };
}

// Event carrying a message; `detail` like CustomEvent, which older runtimes lack.
export class SignalingEvent extends Event {
  constructor(type, detail) {
    super(type);
    this.detail = detail;
  }
}

/**
 * One participant's signaling connection.
 *
 * Events (all SignalingEvent, payload in `detail`):
 *   welcome       the server message, plus `resumed: true|false`
 *   lobby, admitted, declined, peer_joined, peer_left, offer, answer, pong, alert,
 *   media, removed, share_allowed
 *   candidate     the server message with `candidate` converted to RTCIceCandidateInit
 *   error         the server message, plus `fatal: true|false`
 *   message       every server message, as received
 *   statechange   { state, previous, reason }
 *
 * States: idle -> connecting -> connected <-> reconnecting -> closed.
 * "connecting" is used until the first welcome, "reconnecting" afterwards.
 * When closed, `closeReason` is 'left', 'declined', 'removed', 'fatal' or 'closed'.
 */
export class SignalingClient extends EventTarget {
  #ws = null;
  #state = 'idle';
  #closeReason = null;
  #fatalError = null;
  #resume = null;
  // The highest `seq` received. A resume sends it, and the server replays what came after.
  #lastSeq = 0;
  #sentResume = false;
  #welcomed = false;
  #attempt = 0;
  #retryNow = false;
  #reconnectTimer = null;
  #pingTimer = null;
  #connectTimer = null;
  #lastReceived = 0;
  #queue = [];
  #nextId = 0;
  #joinId = 0;
  #me = null;

  constructor({ consultation, token, name = '', url, WebSocket: WebSocketImpl } = {}) {
    super();
    this.consultation = consultation;
    this.token = token;
    this.name = name;
    this.url = url || defaultSignalingUrl();
    this.WebSocketImpl = WebSocketImpl || globalThis.WebSocket;
  }

  get state() { return this.#state; }
  get closeReason() { return this.#closeReason; }
  get fatalError() { return this.#fatalError; }
  /** `you` from the last welcome: {id, role, name}. */
  get me() { return this.#me; }
  get resumeSecret() { return this.#resume; }
  get connected() { return this.#state === 'connected'; }

  /** Open the socket and join. `name` is the display name sent in `join`. */
  connect(name) {
    if (name !== undefined) this.name = name;
    if (this.#state !== 'idle') return;
    this.#open();
  }

  admit(peerId) { return this.#send({ type: 'admit', peer: peerId }); }
  decline(peerId) { return this.#send({ type: 'decline', peer: peerId }); }
  /** Provider or clinician: take a person out of the call; their link stops working. */
  remove(peerId) { return this.#send({ type: 'remove', peer: peerId }); }
  /** Provider or clinician: let a patient or guest share a screen, or take it back. */
  allowShare(peerId, allowed) { return this.#send({ type: 'allow_share', peer: peerId, allowed: Boolean(allowed) }); }
  /** Our own media state: microphone on, camera on, sharing a screen. */
  sendMedia({ audio, video, screen }) {
    return this.#send({ type: 'media', audio: Boolean(audio), video: Boolean(video), screen: Boolean(screen) });
  }
  sendOffer(to, sdp) { return this.#send({ type: 'offer', to, sdp }); }
  sendAnswer(to, sdp) { return this.#send({ type: 'answer', to, sdp }); }

  /** `candidate` is an RTCIceCandidate(Init); null (end of candidates) is not sent. */
  sendCandidate(to, candidate) {
    const init = candidate && typeof candidate.toJSON === 'function' ? candidate.toJSON() : candidate;
    const wire = candidateToWire(init);
    if (!wire) return false;
    return this.#send({ type: 'candidate', to, candidate: wire });
  }

  ping() { return this.#send({ type: 'ping' }); }

  /** Hang up: tell the server, then stop for good. */
  leave() {
    if (this.#state === 'closed') return;
    const ws = this.#ws;
    if (ws && ws.readyState === 1 && this.#welcomed) {
      try { ws.send(JSON.stringify({ type: 'leave' })); } catch { /* closing anyway */ }
      // The server closes the socket after `leave`; this is only a fallback.
      setTimeout(() => { try { ws.close(1000); } catch { /* already closed */ } }, LEAVE_CLOSE_MS);
      this.#ws = null;
      this.#detach(ws);
      this.#shutdown('left', false);
      return;
    }
    this.#shutdown('left');
  }

  /** Close without leaving (the server keeps our place for its grace period). */
  close() {
    this.#shutdown('closed');
  }

  // ---- internals ----

  #setState(state, reason) {
    const previous = this.#state;
    if (previous === state) return;
    this.#state = state;
    this.#emit('statechange', { state, previous, reason: reason ?? null });
  }

  #emit(type, detail) {
    this.dispatchEvent(new SignalingEvent(type, detail));
  }

  #open() {
    this.#reconnectTimer = null;
    this.#setState(this.#welcomed ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch {
      this.#scheduleReconnect();
      return;
    }
    this.#ws = ws;
    this.#connectTimer = setTimeout(() => {
      if (ws === this.#ws && ws.readyState === 0) this.#drop();
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => this.#onOpen(ws);
    ws.onmessage = (ev) => this.#onMessage(ws, ev.data);
    ws.onclose = (ev) => this.#onClose(ws, ev);
    ws.onerror = () => { /* a close event always follows */ };
  }

  #detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  #onOpen(ws) {
    if (ws !== this.#ws) return;
    clearTimeout(this.#connectTimer);
    this.#lastReceived = Date.now();
    const join = {
      type: 'join',
      version: PROTOCOL_VERSION,
      consultation: this.consultation,
      token: this.token,
      name: this.name,
    };
    this.#sentResume = Boolean(this.#resume);
    if (this.#resume) {
      join.resume = this.#resume;
      join.last_seq = this.#lastSeq;
    } else {
      this.#lastSeq = 0; // a new participant: its sequence starts afresh
    }
    this.#joinId = ++this.#nextId;
    join.id = this.#joinId;
    ws.send(JSON.stringify(join));
    this.#startPing();
  }

  #onMessage(ws, data) {
    if (ws !== this.#ws) return;
    this.#lastReceived = Date.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    if (typeof msg.seq === 'number') {
      if (msg.seq <= this.#lastSeq) return; // already handled before a resume
      this.#lastSeq = msg.seq;
    }

    this.#emit('message', msg);

    switch (msg.type) {
      case 'welcome':
        this.#onWelcome(msg);
        return;
      case 'error':
        this.#onError(msg);
        return;
      case 'declined':
        this.#emit('declined', msg);
        this.#shutdown('declined');
        return;
      case 'removed':
        // The link no longer joins: reconnecting cannot help.
        this.#emit('removed', msg);
        this.#shutdown('removed');
        return;
      case 'candidate':
        this.#emit('candidate', { ...msg, candidate: candidateFromWire(msg.candidate) });
        return;
      default:
        if (SERVER_TYPES.includes(msg.type)) this.#emit(msg.type, msg);
    }
  }

  #onWelcome(msg) {
    const resumed = this.#sentResume;
    this.#welcomed = true;
    this.#attempt = 0;
    this.#retryNow = false;
    this.#resume = typeof msg.resume === 'string' && msg.resume ? msg.resume : null;
    this.#me = msg.you || null;
    const queued = this.#queue;
    this.#queue = [];
    this.#setState('connected');
    // Only a resumed session still has the peers those messages were meant for.
    if (resumed) for (const m of queued) this.#send(m);
    this.#emit('welcome', { ...msg, resumed });
  }

  #onError(msg) {
    const code = msg.code;
    // A join refused because the visit is full closes the socket; an admit over it does not.
    const joinFailed = (code === 'bad_field' || code === 'room_full') && msg.ref_id === this.#joinId;
    const fatal = FATAL_CODES.has(code) || joinFailed;
    if (code === 'bad_resume') {
      // Our place is gone; the server closes the socket and we join afresh.
      this.#resume = null;
      this.#retryNow = true;
    }
    if (fatal) this.#fatalError = msg;
    this.#emit('error', { ...msg, fatal });
    if (fatal) this.#shutdown('fatal');
  }

  #onClose(ws, ev) {
    if (ws !== this.#ws) return;
    this.#ws = null;
    this.#detach(ws);
    this.#stopTimers();
    if (this.#state === 'closed') return;
    // The server names the error in the close reason; we may have missed the message.
    const reason = ev && typeof ev.reason === 'string' ? ev.reason : '';
    if (ev && ev.code === 1008 && FATAL_CODES.has(reason)) {
      const msg = { type: 'error', code: reason, message: '' };
      this.#fatalError = msg;
      this.#emit('error', { ...msg, fatal: true });
      this.#shutdown('fatal');
      return;
    }
    if (ev && ev.code === 1008 && reason === 'bad_resume') {
      this.#resume = null;
      this.#retryNow = true;
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect() {
    if (this.#state === 'closed' || this.#reconnectTimer) return;
    this.#setState(this.#welcomed ? 'reconnecting' : 'connecting');
    let delay = 0;
    if (this.#retryNow) {
      this.#retryNow = false;
    } else {
      delay = BACKOFF_MS[Math.min(this.#attempt, BACKOFF_MS.length - 1)];
      this.#attempt++;
    }
    this.#reconnectTimer = setTimeout(() => this.#open(), delay);
  }

  // Treat a silent socket as dropped without waiting for TCP to notice.
  #drop() {
    const ws = this.#ws;
    if (!ws) return;
    this.#ws = null;
    this.#detach(ws);
    this.#stopTimers();
    try { ws.close(4000, 'silent'); } catch { /* already gone */ }
    this.#scheduleReconnect();
  }

  #startPing() {
    this.#stopTimers();
    this.#pingTimer = setInterval(() => {
      const ws = this.#ws;
      if (!ws || ws.readyState !== 1) return;
      if (Date.now() - this.#lastReceived > SILENCE_LIMIT_MS) {
        this.#drop();
        return;
      }
      try { ws.send(JSON.stringify({ type: 'ping' })); } catch { /* close follows */ }
    }, PING_INTERVAL_MS);
  }

  #stopTimers() {
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    this.#pingTimer = null;
    clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
  }

  // Sends now when joined, queues while (re)connecting, drops when closed.
  // Returns the message id, or false when the message was dropped.
  #send(msg) {
    if (this.#state === 'closed' || this.#state === 'idle') return false;
    const ws = this.#ws;
    if (this.#state === 'connected' && ws && ws.readyState === 1) {
      const out = { ...msg, id: ++this.#nextId };
      try {
        ws.send(JSON.stringify(out));
        return out.id;
      } catch {
        // fall through to the queue; the close event will reconnect
      }
    }
    if (msg.type === 'ping') return false;
    this.#queue.push(msg);
    if (this.#queue.length > MAX_QUEUE) this.#queue.shift();
    return 0;
  }

  #shutdown(reason, closeSocket = true) {
    if (this.#state === 'closed') return;
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#stopTimers();
    this.#queue = [];
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      this.#detach(ws);
      if (closeSocket) {
        try { ws.close(1000); } catch { /* already closed */ }
      }
    }
    this.#closeReason = reason;
    this.#setState('closed', reason);
  }
}
