// In-call chat over the `telemed-chat` data channel (docs/datachannels.md): messages, delivery
// receipts, the unread badge, and the provider's "Save transcript".
//
// Everything the peer sends is untrusted: frames are validated field by field, and text only ever
// reaches the page through textContent.

import { h } from './dom.js';
import { api } from './api.js';

export const TEXT_MAX = 4000; // code points, after trimming
export const FRAME_MAX = 16 * 1024; // bytes of one chat frame
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
const NAME_MAX = 80; // a transcript's names
const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const encoder = new TextEncoder();

/** 16 random characters of A-Z a-z 0-9: a chat or transfer id. */
export function randomId(length = 16) {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = '';
  // 62 does not divide 256; the slight bias does not matter for an id.
  for (const b of bytes) out += ID_CHARS[b % ID_CHARS.length];
  return out;
}

export function isValidId(v) {
  return typeof v === 'string' && ID_RE.test(v);
}

/** Number of Unicode code points, not UTF-16 units. */
export function codePoints(s) {
  return [...s].length;
}

export function utf8Length(s) {
  // Cheap bounds first: every UTF-16 unit is 1 to 3 UTF-8 bytes.
  if (s.length * 3 <= FRAME_MAX) return s.length;
  return encoder.encode(s).length;
}

/** HH:MM in local time. */
export function clock(date) {
  return `${String(date.getHours()).padStart(2, '0')}:${String(date.getMinutes()).padStart(2, '0')}`;
}

/** A short, safe rendition of something the peer sent, for a notice. */
function excerpt(v, max = 40) {
  const s = String(v).replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
  const chars = [...s];
  return chars.length > max ? `${chars.slice(0, max).join('')}…` : s;
}

/**
 * Parse a text frame into an object with a string `type`. Returns {frame} or {reason}.
 */
export function parseFrame(data) {
  if (typeof data !== 'string') return { reason: 'binary data where text was expected' };
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    return { reason: 'not JSON' };
  }
  if (!frame || typeof frame !== 'object' || Array.isArray(frame)) return { reason: 'not a JSON object' };
  if (typeof frame.type !== 'string' || frame.type === '') return { reason: 'no type' };
  return { frame };
}

/** Human text of the other side's `error` frame (untrusted: shown as text only, kept short). */
export function peerErrorText(frame) {
  const m = typeof frame.message === 'string' ? frame.message.trim() : '';
  if (m) {
    const s = excerpt(m, 300);
    return s[0].toUpperCase() + s.slice(1);
  }
  return typeof frame.code === 'string' && frame.code ? `Error: ${excerpt(frame.code)}` : 'Unknown error';
}

function displayName(session, fallback) {
  if (session && session.name) return session.name;
  if (session && session.role === 'provider') return 'The provider';
  if (session && session.role === 'patient') return 'The patient';
  if (session && session.role === 'clinician') return 'The clinician';
  if (session && session.role === 'guest') return 'The guest';
  return fallback;
}

const PERSON_ROLES = ['provider', 'patient', 'guest', 'clinician'];

export class Chat extends EventTarget {
  #el;
  #role;
  #consultationId;
  #token;
  #myName;
  #sessions;
  /** @type {object[]} in the order they were sent or received */
  #messages = [];
  #byKey = new Map(); // dir + session + id -> message
  #watched = new WeakSet();
  #unread = 0;
  #available = null;
  #saving = false;
  #stick = true; // keep the log scrolled to its end, unless the reader scrolled up

  /**
   * @param {object} o
   * @param {Record<string, HTMLElement>} o.el  button, badge, panel, close, log, form, input, send, hint,
   *   error, save, saveStatus
   * @param {string} o.role  this page's role, provider or patient
   * @param {string} o.consultationId
   * @param {string} o.token  the link token (Bearer for the transcript)
   * @param {() => string} o.myName
   * @param {() => import('./peer.js').PeerSession[]} o.sessions  the peer sessions, newest first
   */
  constructor({ el, role, consultationId, token, myName, sessions }) {
    super();
    this.#el = el;
    this.#role = role;
    this.#consultationId = consultationId;
    this.#token = token;
    this.#myName = myName;
    this.#sessions = sessions;

    el.button.addEventListener('click', () => this.toggle());
    el.close.addEventListener('click', () => this.toggle(false));
    el.panel.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !e.defaultPrevented) {
        e.preventDefault();
        this.toggle(false);
      }
    });
    el.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#submit();
    });
    el.input.addEventListener('keydown', (e) => {
      // Enter sends, Shift+Enter is a new line (and so is Enter while an IME is composing).
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        el.form.requestSubmit();
      }
    });
    el.input.addEventListener('input', () => { el.error.hidden = true; });
    el.log.addEventListener('scroll', () => { this.#stick = this.#nearEnd(); }, { passive: true });
    el.save.hidden = role !== 'provider';
    if (role === 'provider') el.save.addEventListener('click', () => this.saveTranscript());
    this.refresh();
    this.#renderBadge();
  }

  get open() { return !this.#el.panel.hidden; }

  /** Open or close the panel (toggle without an argument). */
  toggle(open = !this.open) {
    const el = this.#el;
    el.panel.hidden = !open;
    el.button.setAttribute('aria-expanded', String(open));
    document.body.classList.toggle('chat-open', open);
    if (open) {
      this.#unread = 0;
      this.#renderBadge();
      this.#stick = true;
      this.changed();
      if (!el.input.disabled) el.input.focus({ preventScroll: true });
    } else if (el.panel.contains(document.activeElement) || document.activeElement === document.body) {
      el.button.focus({ preventScroll: true });
    }
  }

  /** Start reading a peer session's chat channels, now and later ones. */
  attach(session) {
    for (const channel of session.chatChannels) this.#watch(session, channel);
    session.addEventListener('chatchannel', (e) => this.#watch(session, e.detail));
    session.addEventListener('closed', () => this.refresh());
    session.addEventListener('statechange', () => this.refresh());
    this.refresh();
  }

  /** Where to send: the newest open chat channel of the current (newest connected) session. */
  target() {
    return this.targets()[0] || null;
  }

  /** Everyone a message goes to in a group visit: each person's newest open chat channel. */
  targets() {
    const out = [];
    for (const session of this.#sessions()) {
      if (session.closed) continue;
      const channel = session.openChatChannel;
      if (channel) out.push({ session, channel });
    }
    return out;
  }

  /** Enable or disable sending to match the channels. Fires `availability` when that changes. */
  refresh() {
    const ok = Boolean(this.target());
    if (ok === this.#available) return;
    this.#available = ok;
    this.#el.send.disabled = !ok;
    this.#el.hint.hidden = ok;
    this.dispatchEvent(new CustomEvent('availability', { detail: ok }));
  }

  get available() { return Boolean(this.#available); }

  /** Add an element to the log (messages, notices, transfers), keeping the view at the end. */
  append(li) {
    this.#el.log.append(li);
    this.changed();
  }

  /** Something in the log grew: follow it if the reader is at the end. */
  changed() {
    if (!this.#stick) return;
    const log = this.#el.log;
    log.scrollTop = log.scrollHeight;
  }

  /** A notice line in the log. */
  notice(text, kind = '') {
    this.append(h('li', { class: kind ? `chat-notice chat-notice-${kind}` : 'chat-notice', text }));
  }

  /**
   * Send a chat message, as typing it and pressing Send does. Returns the message id, or null
   * when nothing was sent (the reason is shown under the input).
   */
  send(text) {
    const trimmed = String(text ?? '').trim();
    if (!trimmed) return null;
    if (codePoints(trimmed) > TEXT_MAX) {
      this.#fail(`Messages can be at most ${TEXT_MAX} characters long. This one has ${codePoints(trimmed)}.`);
      return null;
    }
    const targets = this.targets();
    if (targets.length === 0) {
      this.#fail('Chat opens when the other side is connected.');
      return null;
    }
    const sentAt = Date.now();
    const id = randomId();
    const frame = JSON.stringify({ type: 'msg', id, text: trimmed, sent_at: sentAt });
    if (encoder.encode(frame).length > FRAME_MAX) {
      this.#fail('This message is too long to send. Please shorten it.');
      return null;
    }
    // To everyone in the call: one frame on each person's channel, shown once here.
    let sent = 0;
    for (const target of targets) {
      try {
        target.channel.send(frame);
        sent += 1;
      } catch (err) {
        console.warn('telemed: could not send a chat message', err);
      }
    }
    if (sent === 0) {
      this.#fail('The message could not be sent. Please try again.');
      this.refresh();
      return null;
    }
    const msg = {
      id,
      dir: 'out',
      role: this.#role,
      name: this.#myName() || '',
      text: trimmed,
      sentAt,
      shownAt: new Date(sentAt),
      status: 'sent',
      session: targets[0].session,
    };
    this.#el.error.hidden = true;
    this.#add(msg);
    return id;
  }

  /** Plain copies of the messages, for tests and the transcript. */
  messages() {
    return this.#messages.map((m) => ({
      id: m.id,
      dir: m.dir,
      name: m.name,
      text: m.text,
      at: new Date(m.sentAt).toISOString(),
      status: m.status,
    }));
  }

  /** Provider only: POST the chat to the consultation record. */
  async saveTranscript() {
    if (this.#role !== 'provider' || this.#saving) return;
    const el = this.#el;
    const messages = this.#messages.map((m) => ({
      from: m.role,
      name: [...m.name].slice(0, NAME_MAX).join(''),
      text: m.text,
      at: new Date(m.sentAt).toISOString(),
    }));
    this.#saving = true;
    el.save.disabled = true;
    el.saveStatus.classList.remove('is-error');
    el.saveStatus.textContent = 'Saving…';
    try {
      const path = `/api/v1/consultations/${encodeURIComponent(this.#consultationId)}/transcript`;
      const res = await api('POST', path, { messages }, { headers: { Authorization: `Bearer ${this.#token}` } });
      const n = res && Number.isInteger(res.messages) ? res.messages : messages.length;
      el.saveStatus.textContent = `Transcript saved (${n} ${n === 1 ? 'message' : 'messages'})`;
    } catch (err) {
      el.saveStatus.classList.add('is-error');
      el.saveStatus.textContent = (err && err.message) || 'The transcript could not be saved.';
    } finally {
      this.#saving = false;
      el.save.disabled = false;
    }
  }

  // ---- internals ----

  #submit() {
    const el = this.#el;
    if (!el.input.value.trim()) {
      el.input.focus();
      return;
    }
    if (this.send(el.input.value)) {
      el.input.value = '';
      el.error.hidden = true;
    }
    el.input.focus();
  }

  #fail(text) {
    this.#el.error.textContent = text;
    this.#el.error.hidden = false;
  }

  #watch(session, channel) {
    if (this.#watched.has(channel)) return;
    this.#watched.add(channel);
    channel.binaryType = 'arraybuffer';
    channel.addEventListener('open', () => this.refresh());
    channel.addEventListener('close', () => this.refresh());
    channel.addEventListener('message', (e) => this.#onFrame(session, channel, e.data));
    this.refresh();
  }

  #onFrame(session, channel, data) {
    let reason = '';
    let frame = null;
    if (typeof data !== 'string') {
      reason = 'binary data on the chat channel';
    } else if (utf8Length(data) > FRAME_MAX) {
      reason = 'over 16 KiB';
    } else {
      const parsed = parseFrame(data);
      frame = parsed.frame;
      reason = parsed.reason || '';
    }
    let context = 'chat';
    if (!reason) {
      switch (frame.type) {
        case 'msg':
          context = 'chat message';
          reason = this.#onMessage(session, channel, frame);
          break;
        case 'receipt':
          context = 'receipt';
          reason = this.#onReceipt(session, frame);
          break;
        case 'error':
          this.#onPeerError(session, frame);
          return; // never answered
        default:
          reason = `unknown type "${excerpt(frame.type, 32)}"`;
      }
    }
    if (!reason) return;
    this.notice(`A message from ${displayName(session, 'the other side')} could not be read (${reason}).`, 'warning');
    if (channel.readyState === 'open') {
      try {
        channel.send(JSON.stringify({ type: 'error', code: 'bad_frame', message: `${context}: ${reason}` }));
      } catch { /* closing: nothing to answer on */ }
    }
  }

  // Returns '' when the message was fine, else why it could not be read.
  #onMessage(session, channel, f) {
    if (f.id === undefined) return 'id is missing';
    if (!isValidId(f.id)) return 'id is invalid';
    if (f.text === undefined) return 'text is missing';
    if (typeof f.text !== 'string') return 'text is not a string';
    const text = f.text.trim();
    if (!text) return 'text is empty';
    if (codePoints(text) > TEXT_MAX) return `text is over ${TEXT_MAX} characters`;
    if (f.sent_at === undefined) return 'sent_at is missing';
    // Up to the end of year 9999, so that it is a valid RFC 3339 time in a saved transcript.
    if (typeof f.sent_at !== 'number' || !Number.isFinite(f.sent_at) || f.sent_at < 0
      || f.sent_at > MAX_TIME) return 'sent_at is invalid';

    const key = `in:${session.id}:${f.id}`;
    if (!this.#byKey.has(key)) {
      // A message sent twice (on an old and a new channel, say) is shown once and receipted twice.
      this.#add({
        id: f.id,
        dir: 'in',
        role: PERSON_ROLES.includes(session.role) ? session.role
          : (this.#role === 'provider' ? 'patient' : 'provider'),
        name: displayName(session, 'Other side'),
        text,
        sentAt: f.sent_at,
        shownAt: new Date(),
        status: 'received',
        session,
      });
      if (!this.open) {
        this.#unread += 1;
        this.#renderBadge();
      }
    }
    try {
      channel.send(JSON.stringify({ type: 'receipt', id: f.id }));
    } catch { /* the channel closed meanwhile */ }
    return '';
  }

  #onReceipt(session, f) {
    if (f.id === undefined) return 'id is missing';
    if (!isValidId(f.id)) return 'id is invalid';
    const msg = this.#byKey.get(`out:${f.id}`);
    if (msg && msg.status !== 'delivered') {
      msg.status = 'delivered';
      this.#renderStatus(msg);
    }
    return '';
  }

  #onPeerError(session, f) {
    // An error frame is never answered; a malformed one is just dropped.
    if (typeof f.code !== 'string' || !f.code) return;
    this.notice(`${displayName(session, 'The other side')} could not read a message from this page (${peerErrorText(f)}).`, 'warning');
  }

  #add(msg) {
    const out = msg.dir === 'out';
    this.#messages.push(msg);
    this.#byKey.set(out ? `out:${msg.id}` : `in:${msg.session.id}:${msg.id}`, msg);
    const li = h('li', {
      class: `chat-msg chat-${msg.dir}`,
      dataset: { id: msg.id, dir: msg.dir, ...(out ? { status: msg.status } : {}) },
    },
    h('div', { class: 'chat-meta' },
      h('span', { class: 'chat-who', text: out ? 'You' : msg.name }),
      h('time', { class: 'chat-time', datetime: msg.shownAt.toISOString(), text: clock(msg.shownAt) })),
    h('p', { class: 'chat-text', text: msg.text }),
    out ? h('span', { class: 'chat-status', text: 'Sent' }) : null);
    msg.li = li;
    this.append(li);
  }

  #renderStatus(msg) {
    if (!msg.li) return;
    msg.li.dataset.status = msg.status;
    const s = msg.li.querySelector('.chat-status');
    if (s) s.textContent = msg.status === 'delivered' ? 'Delivered' : 'Sent';
  }

  #renderBadge() {
    const n = this.#unread;
    const { badge, button } = this.#el;
    badge.textContent = String(n);
    badge.hidden = n === 0;
    button.setAttribute('aria-label', n ? `Chat, ${n} unread` : 'Chat');
  }

  #nearEnd() {
    const log = this.#el.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  }
}
