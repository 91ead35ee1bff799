// The call's video tiles: one per person in a group visit, named with their role, showing their
// signaled camera and microphone state, their connection quality in words, and who is speaking; a
// shared screen shows large. Rendering only: call.js decides who is in the call.

import { h } from './dom.js';
import { roleWord } from './invite.js';
import { describe } from './quality.js';

const QUALITY_WORDS = { good: 'Good', fair: 'Fair', poor: 'Poor' };

function initials(name) {
  const words = String(name || '').trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return '?';
  return words.slice(0, 2).map((w) => [...w][0].toUpperCase()).join('');
}

/**
 * @typedef {object} Person
 * @property {string} id
 * @property {string} name
 * @property {string} role
 * @property {import('./peer.js').PeerSession} session
 * @property {{audio:boolean, video:boolean, screen:boolean}} media  as they signaled it
 * @property {boolean} canShare
 */

export class Tiles extends EventTarget {
  #root;
  #canManage;
  #tiles = new Map(); // id -> {fig, video, screenFig, screenVideo, ...}
  #quality = new Map();
  #muted = false;

  /**
   * Events: `remove` and `allowshare` (detail: {id, name, allowed?}) from a tile's buttons;
   * `blocked` when the browser refused to play sound (the page offers "Turn on sound").
   * @param {object} o
   * @param {HTMLElement} o.root the grid
   * @param {boolean} o.canManage whether this user may remove people and allow sharing
   */
  constructor({ root, canManage }) {
    super();
    this.#root = root;
    this.#canManage = canManage;
  }

  /** Show exactly these people, in this order. */
  sync(people) {
    const ids = new Set(people.map((p) => p.id));
    for (const [id, t] of this.#tiles) {
      if (!ids.has(id)) {
        t.fig.remove();
        t.screenFig.remove();
        this.#tiles.delete(id);
        this.#quality.delete(id);
      }
    }
    for (const p of people) this.#render(p);
    // Keep DOM order as given: shared screens first (the newest first), then the cameras, then the
    // hidden screens, which stay in the grid for the next share.
    const tiles = people.map((p) => this.#tiles.get(p.id));
    const shown = tiles.filter((t) => !t.screenFig.hidden).map((t) => t.screenFig).reverse();
    const order = [...shown, ...tiles.map((t) => t.fig), ...tiles.filter((t) => t.screenFig.hidden).map((t) => t.screenFig)];
    // Moving nodes costs a layout; this runs on every track and state change, so only when it must.
    const current = [...this.#root.children];
    if (order.length !== current.length || order.some((node, i) => node !== current[i])) {
      for (const node of order) this.#root.append(node);
    }
    const sharing = shown;
    this.#root.dataset.count = String(people.length);
    this.#root.classList.toggle('has-screen', sharing.length > 0);
  }

  /** Record a quality measurement of one person's connection. */
  setQuality(id, m) {
    this.#quality.set(id, m);
    const t = this.#tiles.get(id);
    if (!t) return;
    const word = m && m.word ? m.word : '';
    t.quality.hidden = !word;
    t.quality.dataset.quality = word;
    t.quality.textContent = QUALITY_WORDS[word] || '';
    t.quality.setAttribute('aria-label', word ? `Connection with ${t.name}: ${word}. Show figures` : '');
    t.figures.textContent = describe(m);
  }

  /** Highlight the one speaking (null: nobody). */
  setSpeaking(id) {
    for (const [pid, t] of this.#tiles) t.fig.classList.toggle('is-speaking', pid === id);
  }

  /** Play everything with sound, after the user asked for it. */
  unmute() {
    this.#muted = false;
    for (const t of this.#tiles.values()) {
      t.video.muted = false;
      t.video.play().catch(() => {});
    }
  }

  /** The tiles' state as a user sees it, for tests and support. */
  state() {
    return [...this.#tiles.entries()].map(([id, t]) => ({
      id,
      name: t.name,
      role: t.fig.dataset.role,
      label: t.label.textContent,
      camera: t.fig.dataset.camera,
      mic: t.fig.dataset.mic,
      screen: !t.screenFig.hidden,
      speaking: t.fig.classList.contains('is-speaking'),
      quality: t.quality.dataset.quality || '',
      width: t.fig.getBoundingClientRect().width,
      screenWidth: t.screenFig.hidden ? 0 : t.screenFig.getBoundingClientRect().width,
      videoWidth: t.video.videoWidth,
    }));
  }

  #render(p) {
    let t = this.#tiles.get(p.id);
    if (!t) t = this.#create(p);
    t.name = p.name || roleWord(p.role);
    const f = t.fig;
    f.dataset.role = p.role || '';
    t.nameEl.textContent = t.name;
    t.roleEl.textContent = roleWord(p.role);
    t.initials.textContent = initials(t.name);
    f.setAttribute('aria-label', `${t.name}, ${roleWord(p.role).toLowerCase()}`);

    const s = p.session;
    if (s.remoteStream.getTracks().length > 0 && t.video.srcObject !== s.remoteStream) {
      t.video.srcObject = s.remoteStream;
      this.#play(t.video);
    }
    const connected = ['connected', 'completed'].includes(s.iceState);
    const track = s.remoteStream.getVideoTracks()[0];
    // The camera is off when they say so; black video is never taken as a camera that is off.
    const cameraOn = p.media.video && Boolean(track);
    f.dataset.camera = cameraOn ? 'on' : 'off';
    f.dataset.mic = p.media.audio ? 'on' : 'off';
    f.dataset.state = connected ? 'connected' : 'connecting';
    t.offText.textContent = !connected ? 'Connecting…' : (cameraOn ? '' : 'Camera is off');
    t.off.hidden = connected && cameraOn && !track.muted;
    t.micOff.hidden = p.media.audio;

    const screenTrack = s.screenStream.getVideoTracks()[0];
    const sharing = p.media.screen && screenTrack && screenTrack.readyState === 'live';
    t.screenFig.hidden = !sharing;
    if (sharing && t.screenVideo.srcObject !== s.screenStream) {
      t.screenVideo.srcObject = s.screenStream;
      t.screenVideo.play().catch(() => {});
    }
    if (!sharing && t.screenVideo.srcObject) t.screenVideo.srcObject = null;
    t.screenLabel.textContent = `${t.name}’s screen`;

    if (t.remove) {
      t.remove.setAttribute('aria-label', `Remove ${t.name} from the call`);
      t.allow.textContent = p.canShare ? 'Stop their sharing' : 'Allow sharing';
      t.allow.setAttribute('aria-label', p.canShare ? `Take back screen sharing from ${t.name}` : `Let ${t.name} share a screen`);
      t.allow.dataset.allowed = String(Boolean(p.canShare));
    }
    this.setQuality(p.id, this.#quality.get(p.id));
  }

  #create(p) {
    const t = {};
    t.video = h('video', { class: 'tile-video', autoplay: true, playsinline: true });
    t.video.muted = this.#muted;
    t.initials = h('span', { class: 'tile-initials', 'aria-hidden': 'true' });
    t.offText = h('span', { class: 'tile-off-text' });
    t.off = h('div', { class: 'tile-off' }, t.initials, t.offText);
    t.nameEl = h('span', { class: 'tile-name' });
    t.roleEl = h('span', { class: 'tile-role' });
    t.micOff = h('span', { class: 'tile-mic-off', text: 'Muted', hidden: true });
    t.label = h('figcaption', { class: 'tile-label' }, t.nameEl, t.roleEl, t.micOff);
    t.figures = h('p', { class: 'tile-figures', hidden: true });
    t.quality = h('button', {
      type: 'button', class: 'tile-quality', hidden: true, 'aria-expanded': 'false',
      onClick: () => {
        t.figures.hidden = !t.figures.hidden;
        t.quality.setAttribute('aria-expanded', String(!t.figures.hidden));
      },
    });
    const tools = h('div', { class: 'tile-tools' }, t.quality);
    const manageable = this.#canManage && ['patient', 'guest', 'clinician'].includes(p.role);
    if (manageable) {
      t.remove = h('button', {
        type: 'button', class: 'btn btn-small tile-remove', text: 'Remove',
        onClick: () => this.dispatchEvent(new CustomEvent('remove', { detail: { id: p.id, name: t.name } })),
      });
      tools.append(t.remove);
      if (p.role !== 'clinician') {
        t.allow = h('button', {
          type: 'button', class: 'btn btn-small tile-allow',
          onClick: () => this.dispatchEvent(new CustomEvent('allowshare', {
            detail: { id: p.id, name: t.name, allowed: t.allow.dataset.allowed !== 'true' },
          })),
        });
        tools.append(t.allow);
      } else {
        t.allow = h('span', { hidden: true });
      }
    }
    t.fig = h('figure', { class: 'tile', dataset: { peer: p.id } }, t.video, t.off, t.label, tools, t.figures);
    t.screenVideo = h('video', { class: 'tile-video', autoplay: true, playsinline: true, muted: true });
    t.screenVideo.muted = true;
    t.screenLabel = h('figcaption', { class: 'tile-label' });
    t.screenFig = h('figure', { class: 'tile tile-screen', dataset: { peer: p.id, screen: '' }, hidden: true },
      t.screenVideo, t.screenLabel);
    this.#tiles.set(p.id, t);
    return t;
  }

  #play(video) {
    const p = video.play();
    if (!p) return;
    p.catch((err) => {
      if (err && err.name === 'NotAllowedError') {
        // The browser blocked sound; play muted and let the user turn it on.
        this.#muted = true;
        video.muted = true;
        video.play().catch(() => {});
        this.dispatchEvent(new Event('blocked'));
      }
    });
  }
}
