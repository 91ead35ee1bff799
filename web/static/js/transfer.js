// File transfer over `telemed-file` data channels (docs/datachannels.md): one channel per file,
// an offer, binary chunks (8-byte big-endian offset + data), an end with the SHA-256, and a done
// from the receiver once the hash checks out. Either side may cancel.
//
// Nothing received is trusted: every frame is checked, the name is sanitized, previews come from
// sniffing the first bytes (never from the sender's media type), and nothing is opened or run.

import { h } from './dom.js';
import { sha256 } from './vendor/noble-hashes/sha2.js';
import { isValidId, parseFrame, peerErrorText, randomId, codePoints } from './chat.js';

export const MAX_FILE = 1024 * 1024 * 1024; // 1 GiB
export const CHUNK_MAX = 262144; // a chunk message, header included
const CHUNK_FALLBACK = 65536; // when the other side advertises no max-message-size
const HEADER = 8;
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 2 * 1024 * 1024;
const PART_BYTES = 8 * 1024 * 1024; // gather received chunks into Blobs of this size
const MAX_INCOMING = 4; // concurrent incoming transfers from one peer
// Received files stay in the page until removed; past this much, new files are refused, so a peer
// cannot fill the browser's storage by sending file after file.
export const DEFAULT_KEEP_LIMIT = 2 * 1024 * 1024 * 1024;
const UI_TICK_MS = 200;
const SPEED_WINDOW_MS = 3000;
const RECEIVER_CLOSE_MS = 10000; // after done, if the sender has not closed the channel
const LINGER_MS = 5000; // after sending cancel or error, if the other side has not closed the channel

const ACTIVE = new Set(['active', 'verifying']);

/** Receivers keep only the last path part, replace control characters, and cut at 255. */
export function sanitizeName(raw) {
  let name = String(raw ?? '');
  name = name.slice(Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\')) + 1);
  // Control characters, and format characters such as U+202E, which would make "x\u202Egpj.exe"
  // display as "xexe.jpg".
  name = name.replace(/[\u0000-\u001f\u007f-\u009f]|\p{Cf}/gu, '_');
  const chars = [...name];
  if (chars.length > 255) name = chars.slice(0, 255).join('');
  if (!name.trim() || name === '.' || name === '..') return 'file';
  return name;
}

/** A name for an outgoing offer: at most 255 characters, keeping a short extension. */
function offerName(raw) {
  const name = sanitizeName(raw);
  const chars = [...name];
  if (chars.length <= 255) return name;
  const dot = name.lastIndexOf('.');
  const ext = dot > 0 ? [...name.slice(dot)] : [];
  if (ext.length > 1 && ext.length <= 16) return chars.slice(0, 255 - ext.length).join('') + ext.join('');
  return chars.slice(0, 255).join('');
}

const MIME_RE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;
// Types a browser would run or render as a page if the object URL were opened in a tab.
const ACTIVE_MIME = /(html|xml|javascript|ecmascript|svg|xsl|multipart|cache-manifest)/;

/** The media type for display: a plain type/subtype, lower case, or ''. */
export function displayMime(raw) {
  if (typeof raw !== 'string') return '';
  const m = raw.split(';')[0].trim().toLowerCase();
  return MIME_RE.test(m) ? m : '';
}

/** The type the received Blob gets: a harmless media type, else application/octet-stream. */
function blobMime(raw) {
  const m = displayMime(raw);
  return m && !ACTIVE_MIME.test(m) ? m : 'application/octet-stream';
}

/** Image kind from the first bytes: 'png', 'jpeg', 'webp' or ''. */
export function sniffImage(b) {
  if (b.length >= 4 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 12 && b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46
    && b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50) return 'webp';
  return '';
}

function hex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

export function formatBytes(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

function formatLeft(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s} s left`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s left`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min left`;
}

function peerName(session) {
  if (session && session.name) return session.name;
  if (session && session.role === 'provider') return 'the provider';
  if (session && session.role === 'patient') return 'the patient';
  if (session && session.role === 'clinician') return 'the clinician';
  if (session && session.role === 'guest') return 'the guest';
  return 'the other side';
}

function capitalize(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

// What the receiver says on the wire with each error code.
const WIRE_MESSAGE = {
  out_of_order: 'a chunk did not start where the previous one ended',
  hash_mismatch: "the file's SHA-256 does not match: it was damaged or changed on the way",
  busy: 'already receiving 4 files from you; send this one when one of them is done',
};

export class Transfers {
  #append;
  #changed;
  #notice;
  #target;
  #zoom;
  /** @type {Map<string, object>} by local key, in start order */
  #all = new Map();
  #urls = new Set();
  #timer = null;
  #watched = new WeakSet();
  #scale = 0; // zoom view: 0 is "fit to the window"
  #zoomReturn = null;

  /**
   * @param {object} o
   * @param {(li: HTMLElement) => void} o.append  puts a transfer's entry into the chat log
   * @param {() => void} [o.changed]  an entry grew (keeps the log scrolled to its end)
   * @param {(text: string) => void} o.notice  a notice line in the chat log
   * @param {() => ({session: import('./peer.js').PeerSession} | null)} o.target  the current peer
   * @param {Record<string, HTMLElement>} o.zoom  dialog, img, title, zoomIn, zoomOut, fit, close
   */
  /** The most bytes of received files kept at once (DEFAULT_KEEP_LIMIT; tests lower it). */
  keepLimit = DEFAULT_KEEP_LIMIT;

  constructor({ append, changed, notice, target, zoom }) {
    this.#append = append;
    this.#changed = changed || (() => {});
    this.#notice = notice;
    this.#target = target;
    this.#zoom = zoom;
    this.#setUpZoom();
  }

  /** Receive the files a peer session sends, and interrupt its transfers when it ends. */
  attach(session) {
    if (this.#watched.has(session)) return;
    this.#watched.add(session);
    session.addEventListener('filechannel', (e) => this.#incoming(session, e.detail));
    session.addEventListener('closed', () => {
      for (const t of this.#all.values()) {
        if (t.session === session && ACTIVE.has(t.state)) this.#interrupt(t);
      }
    });
    session.addEventListener('statechange', () => {
      if (session.pc.connectionState !== 'closed') return;
      for (const t of this.#all.values()) {
        if (t.session === session && ACTIVE.has(t.state)) this.#interrupt(t);
      }
    });
  }

  /**
   * Send a File or Blob to one peer: `session`, or the current peer when it is omitted. Returns
   * the transfer id.
   */
  send(file, session = null) {
    const name = offerName((file && file.name) || 'file');
    const size = file ? file.size : 0;
    const t = this.#create({
      id: randomId(), dir: 'out', name, size, mime: displayMime(file && file.type),
    });
    t.file = file;
    t.handed = 0;
    t.endSent = false;
    if (!(file instanceof Blob)) {
      this.#finish(t, 'failed', 'not_a_file', 'Failed: that is not a file.');
      return t.id;
    }
    if (size > MAX_FILE) {
      this.#finish(t, 'failed', 'too_large',
        `This file is too large to send (${formatBytes(size)}). Files can be at most 1 GiB.`);
      return t.id;
    }
    const target = session && !session.closed ? { session } : this.#target();
    if (!target) {
      this.#finish(t, 'failed', '', 'Not sent: files can be sent once the other side is connected.');
      return t.id;
    }
    t.session = target.session;
    t.peer = peerName(t.session);
    this.#renderWho(t);
    let channel;
    try {
      channel = target.session.createFileChannel();
    } catch (err) {
      console.warn('telemed: could not open a file channel', err);
      this.#finish(t, 'failed', '', 'Not sent: the connection is not ready. Please try again.');
      return t.id;
    }
    t.channel = channel;
    channel.bufferedAmountLowThreshold = LOW_WATER;
    channel.addEventListener('open', () => this.#startSending(t));
    channel.addEventListener('message', (e) => this.#onSenderFrame(t, e.data));
    channel.addEventListener('close', () => { if (ACTIVE.has(t.state)) this.#interrupt(t); });
    this.#setStatus(t, `Waiting for ${t.peer}…`);
    this.#tick();
    return t.id;
  }

  /** Plain copies of every transfer, oldest first. */
  list() {
    return [...this.#all.values()].map((t) => ({
      id: t.id,
      dir: t.dir,
      name: t.name,
      size: t.size,
      mime: t.mime,
      state: t.state,
      bytes: this.#bytes(t),
      sha256: t.sha256,
      error: t.error,
      message: t.message,
      url: t.url,
      removed: Boolean(t.removed),
      startedAt: t.startedAt,
      endedAt: t.endedAt,
    }));
  }

  /** The received file of a completed incoming transfer, as a Blob (null otherwise). */
  file(id) {
    for (const t of this.#all.values()) if (t.id === id && t.dir === 'in' && t.state === 'done') return t.blob || null;
    return null;
  }

  /** Cancel a transfer by id, as its Cancel button does. */
  cancel(id) {
    for (const t of this.#all.values()) if (t.id === id && ACTIVE.has(t.state)) this.#cancel(t);
  }

  /** Free the received files' memory (the page is going away). */
  /** Bytes of received files the page holds or is receiving. */
  #kept() {
    let n = 0;
    for (const t of this.#all.values()) {
      if (t.dir === 'in' && (ACTIVE.has(t.state) || (t.state === 'done' && !t.removed))) n += t.size;
    }
    return n;
  }

  /** Let go of a received file: its link and preview go, and its bytes no longer count. */
  remove(id) {
    for (const t of this.#all.values()) {
      if (t.id !== id || t.dir !== 'in' || t.state !== 'done' || t.removed) continue;
      t.removed = true;
      if (t.url) {
        URL.revokeObjectURL(t.url);
        this.#urls.delete(t.url);
      }
      t.url = '';
      t.blob = null;
      if (t.ui) t.ui.result.replaceChildren();
      this.#setStatus(t, `Received from ${t.peer}, checked; removed from this page`);
      this.#changed();
    }
  }

  revokeAll() {
    for (const url of this.#urls) URL.revokeObjectURL(url);
    this.#urls.clear();
  }

  // ---------- sending ----------

  #sendText(t, obj) {
    if (!t.channel || t.channel.readyState !== 'open') return false;
    try {
      t.channel.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  #startSending(t) {
    if (t.state !== 'active') return;
    t.startedAt = t.startedAt || Date.now();
    this.#sendText(t, { type: 'offer', id: t.id, name: t.name, size: t.size, mime: t.mime });
    this.#setStatus(t, `Sending to ${t.peer}…`);
    this.#pump(t).catch((err) => {
      if (t.state !== 'active') return;
      if (!t.channel || t.channel.readyState !== 'open') {
        this.#interrupt(t);
        return;
      }
      console.warn('telemed: sending a file failed', err);
      // No error code fits "the sender could not read its own file": cancel, and say why here.
      this.#sendText(t, { type: 'cancel' });
      this.#closeSoon(t);
      this.#finish(t, 'failed', '', 'Failed: the file could not be read. Was it moved or changed?');
    });
  }

  async #pump(t) {
    const ch = t.channel;
    const sctp = t.session.pc.sctp;
    const max = sctp && sctp.maxMessageSize;
    const message = Math.min(CHUNK_MAX, max >= 1024 ? max : CHUNK_FALLBACK);
    const step = message - HEADER;
    const hasher = sha256.create();
    let offset = 0;
    while (offset < t.size) {
      if (ch.bufferedAmount > HIGH_WATER) await this.#drained(t);
      if (t.state !== 'active') return;
      const n = Math.min(step, t.size - offset);
      const data = new Uint8Array(await t.file.slice(offset, offset + n).arrayBuffer());
      if (t.state !== 'active') return;
      if (data.length !== n) throw new Error('the file changed while it was read');
      hasher.update(data);
      const frame = new Uint8Array(HEADER + n);
      new DataView(frame.buffer).setBigUint64(0, BigInt(offset));
      frame.set(data, HEADER);
      ch.send(frame);
      offset += n;
      t.handed = offset;
    }
    t.sha256 = hex(hasher.digest());
    if (!this.#sendText(t, { type: 'end', sha256: t.sha256 })) throw new Error('channel closed');
    t.endSent = true;
    this.#tick();
  }

  // Resolves on bufferedamountlow, or when the transfer stops being active.
  #drained(t) {
    return new Promise((resolve) => {
      const ch = t.channel;
      const done = () => {
        ch.removeEventListener('bufferedamountlow', done);
        ch.removeEventListener('close', done);
        t.wake = null;
        resolve();
      };
      t.wake = done;
      ch.addEventListener('bufferedamountlow', done);
      ch.addEventListener('close', done);
    });
  }

  #onSenderFrame(t, data) {
    if (!ACTIVE.has(t.state)) return;
    const { frame, reason } = parseFrame(data);
    if (reason) {
      this.#protocolError(t, 'bad_frame', typeof data === 'string' ? reason : 'binary data sent to the sender');
      return;
    }
    switch (frame.type) {
      case 'done':
        if (!t.endSent) {
          this.#protocolError(t, 'bad_frame', 'done before the end of the file');
          return;
        }
        t.handed = t.size;
        this.#closeChannel(t);
        this.#finish(t, 'done', '', `Sent to ${t.peer}, checked`);
        break;
      case 'cancel':
        this.#closeChannel(t);
        this.#finish(t, 'cancelled', '', `Cancelled by ${t.peer}`);
        break;
      case 'error':
        this.#onPeerError(t, frame);
        break;
      default:
        this.#protocolError(t, 'bad_frame', 'unexpected frame type');
    }
  }

  // ---------- receiving ----------

  #incoming(session, channel) {
    // The transfer exists from the offer on; until then only the channel does.
    const rx = { session, channel, t: null };
    channel.binaryType = 'arraybuffer';
    channel.addEventListener('message', (e) => this.#onReceiverFrame(rx, e.data));
    channel.addEventListener('close', () => {
      if (rx.t && ACTIVE.has(rx.t.state)) this.#interrupt(rx.t);
    });
  }

  #rejectChannel(rx, code, reason) {
    const name = peerName(rx.session);
    this.#notice(`A file from ${capitalize(name)} could not be received (${reason}).`);
    try {
      if (rx.channel.readyState === 'open') {
        rx.channel.send(JSON.stringify({ type: 'error', code, message: `file transfer: ${reason}` }));
      }
    } catch { /* closing anyway */ }
    rx.dead = true;
    rx.channel.close();
  }

  #onReceiverFrame(rx, data) {
    if (rx.dead) return;
    const t = rx.t;
    if (!t) {
      this.#onFirstFrame(rx, data);
      return;
    }
    if (!ACTIVE.has(t.state)) return;
    if (typeof data !== 'string') {
      this.#onChunk(t, data);
      return;
    }
    const { frame, reason } = parseFrame(data);
    if (reason) {
      this.#protocolError(t, 'bad_frame', reason);
      return;
    }
    switch (frame.type) {
      case 'end':
        this.#onEnd(t, frame);
        break;
      case 'cancel':
        this.#discard(t);
        this.#closeChannel(t);
        this.#finish(t, 'cancelled', '', `Cancelled by ${t.peer}`);
        break;
      case 'error':
        this.#discard(t);
        this.#onPeerError(t, frame);
        break;
      case 'offer':
        this.#protocolError(t, 'bad_frame', 'a second offer');
        break;
      default:
        this.#protocolError(t, 'bad_frame', 'unexpected frame type');
    }
  }

  #onFirstFrame(rx, data) {
    if (typeof data !== 'string') {
      this.#rejectChannel(rx, 'bad_frame', 'binary data before the offer');
      return;
    }
    const { frame: f, reason } = parseFrame(data);
    if (reason) {
      this.#rejectChannel(rx, 'bad_frame', reason);
      return;
    }
    if (f.type === 'cancel' || f.type === 'error') {
      // Gave up before offering: nothing to show, nothing to answer.
      rx.dead = true;
      rx.channel.close();
      return;
    }
    if (f.type !== 'offer') {
      this.#rejectChannel(rx, 'bad_frame', 'the first message is not an offer');
      return;
    }
    let problem = '';
    if (!isValidId(f.id)) problem = 'offer: id is missing or invalid';
    else if (typeof f.name !== 'string' || f.name.length === 0 || codePoints(f.name) > 255) {
      problem = 'offer: name is missing or invalid';
    } else if (typeof f.size !== 'number' || !Number.isSafeInteger(f.size) || f.size < 0) {
      problem = 'offer: size is missing or invalid';
    } else if (f.mime !== undefined && (typeof f.mime !== 'string' || codePoints(f.mime) > 255)) {
      problem = 'offer: mime is invalid';
    }
    if (problem) {
      this.#rejectChannel(rx, 'bad_frame', problem);
      return;
    }

    const session = rx.session;
    const t = this.#create({
      id: f.id, dir: 'in', name: sanitizeName(f.name), size: f.size, mime: displayMime(f.mime), session,
    });
    rx.t = t;
    t.channel = rx.channel;
    t.received = 0;
    t.hasher = sha256.create();
    t.parts = [];
    t.pending = [];
    t.pendingBytes = 0;
    t.head = new Uint8Array(0);
    t.blobType = blobMime(f.mime);
    t.startedAt = Date.now();

    if (f.size > MAX_FILE) {
      this.#protocolError(t, 'too_large', `the file is ${formatBytes(f.size)}; at most 1 GiB can be received`,
        `Refused: the file is too large (${formatBytes(f.size)}; at most 1 GiB).`);
      return;
    }
    const kept = this.#kept() - t.size;
    if (kept + t.size > this.keepLimit) {
      this.#protocolError(t, 'too_large',
        `the receiver already keeps ${formatBytes(kept)} of files from this call; they must remove some first`,
        `Refused: this page already keeps ${formatBytes(kept)} of received files. Remove some to receive more.`);
      return;
    }
    const busy = [...this.#all.values()].filter((x) => x.dir === 'in' && x.session === session
      && x !== t && ACTIVE.has(x.state)).length;
    if (busy >= MAX_INCOMING) {
      this.#protocolError(t, 'busy', WIRE_MESSAGE.busy,
        `Refused: already receiving ${MAX_INCOMING} files from ${t.peer}.`);
      return;
    }
    this.#setStatus(t, `Receiving from ${t.peer}…`);
    this.#tick();
    if (t.size === 0) this.#render(t);
  }

  #onChunk(t, buf) {
    const len = buf.byteLength;
    if (len < HEADER + 1 || len > CHUNK_MAX) {
      this.#protocolError(t, 'bad_frame', `a chunk of ${len} bytes, not 9 to ${CHUNK_MAX}`);
      return;
    }
    const view = new DataView(buf);
    const offset = view.getUint32(0) * 2 ** 32 + view.getUint32(4);
    if (offset !== t.received) {
      this.#protocolError(t, 'out_of_order', WIRE_MESSAGE.out_of_order,
        'Failed: parts of the file arrived out of order.');
      return;
    }
    const n = len - HEADER;
    if (t.received + n > t.size) {
      this.#protocolError(t, 'size_mismatch', `more data than the offered ${t.size} bytes`,
        `Failed: ${t.peer} sent more data than the file’s size.`);
      return;
    }
    const data = new Uint8Array(buf, HEADER);
    if (t.head.length < 12) {
      const head = new Uint8Array(Math.min(12, t.head.length + n));
      head.set(t.head);
      head.set(data.subarray(0, head.length - t.head.length), t.head.length);
      t.head = head;
    }
    t.hasher.update(data);
    t.pending.push(data);
    t.pendingBytes += n;
    t.received += n;
    if (t.pendingBytes >= PART_BYTES) this.#flushPart(t);
  }

  #flushPart(t) {
    if (t.pending.length === 0) return;
    t.parts.push(new Blob(t.pending));
    t.pending = [];
    t.pendingBytes = 0;
  }

  #onEnd(t, f) {
    if (t.state !== 'active') {
      this.#protocolError(t, 'bad_frame', 'a second end');
      return;
    }
    if (typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) {
      this.#protocolError(t, 'bad_frame', 'end: sha256 is missing or invalid');
      return;
    }
    if (t.received !== t.size) {
      this.#protocolError(t, 'size_mismatch', `the end came after ${t.received} of ${t.size} bytes`,
        `Failed: the file ended early (${formatBytes(t.received)} of ${formatBytes(t.size)}).`);
      return;
    }
    this.#setState(t, 'verifying');
    this.#setStatus(t, 'Checking the file…');
    const digest = hex(t.hasher.digest());
    t.hasher = null;
    if (digest !== f.sha256) {
      this.#protocolError(t, 'hash_mismatch', WIRE_MESSAGE.hash_mismatch,
        'Failed: the file was damaged or changed on the way (its SHA-256 does not match).');
      return;
    }
    t.sha256 = digest;
    this.#flushPart(t);
    const blob = new Blob(t.parts, { type: t.blobType });
    t.parts = [];
    if (blob.size !== t.size) {
      this.#protocolError(t, 'write_failed', 'the browser could not keep the file',
        'Failed: the browser could not keep the file.');
      return;
    }
    t.blob = blob;
    t.url = URL.createObjectURL(blob);
    this.#urls.add(t.url);
    t.image = sniffImage(t.head);
    this.#sendText(t, { type: 'done' });
    // The sender closes the channel on done; close it here too if it does not.
    const ch = t.channel;
    setTimeout(() => { if (ch.readyState === 'open') ch.close(); }, RECEIVER_CLOSE_MS);
    this.#finish(t, 'done', '', `Received from ${t.peer}, checked`);
  }

  #discard(t) {
    if (t.dir !== 'in') return;
    t.parts = [];
    t.pending = [];
    t.pendingBytes = 0;
    t.hasher = null;
  }

  // ---------- either side ----------

  // We cannot go on: tell the other side, close, and report.
  #protocolError(t, code, wireMessage, humanMessage) {
    this.#sendText(t, { type: 'error', code, message: `file transfer: ${wireMessage}` });
    this.#discard(t);
    this.#closeSoon(t);
    const text = humanMessage || `Failed: what ${t.peer} sent could not be read (${wireMessage}).`;
    this.#finish(t, 'failed', code, text);
  }

  #onPeerError(t, f) {
    const code = typeof f.code === 'string' ? f.code.slice(0, 64) : '';
    this.#closeChannel(t);
    this.#finish(t, 'failed', code || 'error', `Failed: ${capitalize(t.peer)} reported: ${peerErrorText(f)}`);
  }

  #cancel(t) {
    // Also while verifying: a receiver that never answers must not leave the sender stuck.
    if (!ACTIVE.has(t.state)) return;
    this.#sendText(t, { type: 'cancel' });
    this.#discard(t);
    this.#closeSoon(t);
    this.#finish(t, 'cancelled', '', 'Cancelled');
  }

  #interrupt(t) {
    this.#discard(t);
    this.#finish(t, 'interrupted', '', `Interrupted: ${capitalize(t.peer)} left or the connection was lost.`);
  }

  // After our last word (cancel or error) the other side closes the channel once it has read it;
  // closing at once could reach a peer before that word does (pion reports the close first), and
  // it would see "interrupted" instead of the reason.
  #closeSoon(t) {
    const ch = t.channel;
    setTimeout(() => this.#closeChannel({ channel: ch }), LINGER_MS);
  }

  #closeChannel(t) {
    const ch = t.channel;
    // Chrome sends what is queued before it closes, so a final cancel or error still arrives.
    if (ch && (ch.readyState === 'open' || ch.readyState === 'connecting')) ch.close();
  }

  // ---------- state and view ----------

  #create({ id, dir, name, size, mime, session = null }) {
    const t = {
      key: randomId(),
      id,
      dir,
      name,
      size,
      mime,
      session,
      peer: peerName(session),
      state: 'active',
      sha256: '',
      error: '',
      message: '',
      url: '',
      startedAt: Date.now(),
      endedAt: 0,
      samples: [],
      channel: null,
    };
    this.#all.set(t.key, t);
    this.#build(t);
    return t;
  }

  #bytes(t) {
    if (t.dir === 'in') return t.received || 0;
    if (t.state === 'done') return t.size;
    const buffered = t.channel ? t.channel.bufferedAmount : 0;
    return Math.max(0, Math.min(t.size, (t.handed || 0) - buffered));
  }

  #setState(t, state) {
    t.state = state;
    if (t.li) t.li.dataset.state = state;
  }

  #setStatus(t, text) {
    t.message = text;
    if (t.ui) t.ui.status.textContent = text;
  }

  #finish(t, state, code, message) {
    if (!ACTIVE.has(t.state)) return;
    this.#setState(t, state);
    t.error = code || '';
    t.endedAt = Date.now();
    if (t.wake) t.wake();
    t.file = null;
    this.#setStatus(t, message);
    this.#render(t);
    if (t.ui && t.ui.cancel) {
      const hadFocus = document.activeElement === t.ui.cancel;
      t.ui.cancel.remove();
      t.ui.cancel = null;
      if (hadFocus && t.ui.name) t.li.focus({ preventScroll: true });
    }
    if (state === 'done' && t.dir === 'in') this.#showResult(t);
    this.#changed();
  }

  #build(t) {
    const out = t.dir === 'out';
    const ui = {};
    ui.name = h('span', { class: 'transfer-name', text: t.name });
    ui.size = h('span', { class: 'transfer-size', text: formatBytes(t.size) });
    ui.progress = h('progress', {
      class: 'transfer-progress', max: String(Math.max(t.size, 1)), value: '0', 'aria-label': `Progress of ${t.name}`,
    });
    ui.percent = h('span', { class: 'transfer-percent', text: '0%' });
    ui.speed = h('span', { class: 'transfer-speed' });
    ui.status = h('p', { class: 'transfer-status' });
    ui.cancel = h('button', {
      type: 'button',
      class: 'btn btn-small btn-quiet transfer-cancel',
      text: 'Cancel',
      'aria-label': `Cancel ${out ? 'sending' : 'receiving'} ${t.name}`,
      onClick: () => this.#cancel(t),
    });
    ui.result = h('div', { class: 'transfer-result' });
    ui.who = h('span', { class: 'transfer-who' });
    t.ui = ui;
    this.#renderWho(t);
    t.li = h('li', {
      class: `transfer transfer-${t.dir}`,
      tabindex: '-1',
      dataset: { id: t.id, dir: t.dir, state: t.state },
    },
    h('div', { class: 'transfer-head' },
      ui.who,
      h('span', { class: 'transfer-file' }, ui.name, ' ', ui.size)),
    ui.progress,
    h('div', { class: 'transfer-meta' }, ui.percent, ui.speed, ui.cancel),
    ui.status,
    ui.result);
    this.#append(t.li);
  }

  #renderWho(t) {
    if (!t.ui) return;
    t.ui.who.textContent = t.dir === 'in' ? `File from ${t.peer}`
      : (t.session ? `File to ${t.peer}` : 'File');
  }

  #render(t) {
    const ui = t.ui;
    if (!ui) return;
    const bytes = this.#bytes(t);
    const active = ACTIVE.has(t.state);
    // The sender is "verifying" once everything has left and it waits for the receiver's done.
    if (t.dir === 'out' && t.state === 'active' && t.endSent && t.channel && t.channel.bufferedAmount === 0) {
      this.#setState(t, 'verifying');
      this.#setStatus(t, `Sent; waiting for ${t.peer} to check the file…`);
    }
    const now = performance.now();
    if (active) {
      t.samples.push({ at: now, bytes });
      while (t.samples.length > 2 && now - t.samples[1].at >= SPEED_WINDOW_MS) t.samples.shift();
    }
    const size = Math.max(t.size, 1);
    const shown = t.state === 'done' ? size : Math.min(bytes, size);
    ui.progress.value = shown;
    const percent = t.size === 0 ? (t.state === 'done' ? 100 : 0) : Math.floor((bytes / t.size) * 100);
    ui.percent.textContent = `${t.state === 'done' ? 100 : percent}%`;
    if (active && t.samples.length >= 2) {
      const first = t.samples[0];
      const dt = (now - first.at) / 1000;
      const speed = dt > 0.3 ? (bytes - first.bytes) / dt : 0;
      let text = `${(speed / 1e6).toFixed(1)} MB/s`;
      if (speed > 0 && bytes < t.size) text += ` · ${formatLeft((t.size - bytes) / speed)}`;
      ui.speed.textContent = text;
    } else if (!active) {
      const seconds = t.endedAt && t.startedAt ? (t.endedAt - t.startedAt) / 1000 : 0;
      ui.speed.textContent = t.state === 'done' && seconds > 0 && t.size > 0
        ? `${(t.size / 1e6 / seconds).toFixed(1)} MB/s average` : '';
    }
  }

  #showResult(t) {
    const ui = t.ui;
    if (t.image) {
      const img = h('img', {
        class: 'transfer-preview',
        src: t.url,
        alt: `Picture received: ${t.name}. Select to zoom.`,
        tabindex: '0',
        role: 'button',
        onClick: () => this.#openZoom(t),
        onLoad: () => this.#changed(),
        onKeydown: (e) => {
          if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            this.#openZoom(t);
          }
        },
      });
      ui.result.append(img);
    }
    ui.result.append(h('a', {
      class: 'btn btn-small transfer-download', href: t.url, download: t.name, text: 'Download',
      'aria-label': `Download ${t.name}`,
    }), h('button', {
      type: 'button', class: 'btn btn-small btn-quiet transfer-remove', text: 'Remove',
      'aria-label': `Remove ${t.name} from this page`, onClick: () => this.remove(t.id),
    }));
  }

  // One timer for every transfer's progress: at most five updates a second, not one per chunk.
  #tick() {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      let any = false;
      for (const t of this.#all.values()) {
        if (!ACTIVE.has(t.state)) continue;
        any = true;
        this.#render(t);
      }
      if (!any) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    }, UI_TICK_MS);
  }

  // ---------- zoom view ----------

  #setUpZoom() {
    const z = this.#zoom;
    if (!z || !z.dialog) return;
    // The current scale, from the fitted picture's size when fitted.
    const current = () => (this.#scale || (z.img.naturalWidth ? z.img.clientWidth / z.img.naturalWidth : 1));
    z.zoomIn.addEventListener('click', () => { this.#scale = Math.min(8, current() * 1.25); this.#applyZoom(); });
    z.zoomOut.addEventListener('click', () => { this.#scale = Math.max(0.05, current() / 1.25); this.#applyZoom(); });
    z.fit.addEventListener('click', () => { this.#scale = 0; this.#applyZoom(); });
    z.close.addEventListener('click', () => z.dialog.close());
    z.dialog.addEventListener('close', () => {
      z.img.removeAttribute('src');
      if (this.#zoomReturn && this.#zoomReturn.isConnected) this.#zoomReturn.focus({ preventScroll: true });
      this.#zoomReturn = null;
    });
    // A click on the backdrop (outside the picture and its bar) closes too.
    z.dialog.addEventListener('click', (e) => { if (e.target === z.dialog) z.dialog.close(); });
  }

  #applyZoom() {
    const z = this.#zoom;
    const fit = this.#scale === 0;
    z.img.classList.toggle('is-fit', fit);
    // CSSOM, not a style attribute: the page's CSP allows only its own stylesheet.
    z.img.style.width = fit ? '' : `${Math.round(z.img.naturalWidth * this.#scale)}px`;
    z.img.style.maxWidth = fit ? '' : 'none';
    z.fit.setAttribute('aria-pressed', String(fit));
  }

  #openZoom(t) {
    const z = this.#zoom;
    if (!z || !z.dialog || !t.url) return;
    this.#zoomReturn = document.activeElement;
    z.title.textContent = t.name;
    z.img.alt = t.name;
    z.img.src = t.url;
    this.#scale = 0;
    this.#applyZoom();
    if (!z.dialog.open) z.dialog.showModal();
    z.close.focus();
  }
}
