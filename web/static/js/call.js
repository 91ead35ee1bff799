// The consultation page: device check, waiting room, call. Both roles.

import { SignalingClient } from './protocol.js';
import { LocalMedia, MicLevel, explainMediaError } from './devices.js';
import { PeerSession } from './peer.js';
import { Chat } from './chat.js';
import { Transfers } from './transfer.js';
import { VitalsPanel, AlertList } from './vitals.js';
import { $, h, tokenFromHash } from './dom.js';
import { Tiles } from './tiles.js';
import { InviteDialog, roleWord } from './invite.js';
import { capsFor, measure, ownConnectionWeak } from './quality.js';
import { postCallQuality, peerSummary } from './precall.js';

const ERROR_CLEAR_MS = 10000;
const LOBBY_TICK_MS = 15000;
const QUALITY_MS = 2000;
const SPEAKING_MS = 250;
// An audio level (0 to 1) above this is someone speaking; the highlight stays a moment after.
const SPEAKING_LEVEL = 0.04;
const SPEAKING_HOLD_MS = 800;

// Full-page explanations for errors that end the visit. [title, patient text, provider text]
const FATAL_TEXT = {
  missing_token: [
    'This link is incomplete',
    'Part of the link is missing. Please open the full link from your clinic again, or ask them to send it again.',
    'Part of the link is missing. Open the consultation again from your dashboard.',
  ],
  bad_token: [
    'This link isn’t valid',
    'The link may have been copied incompletely. Please open the full link again, or ask your clinic for a new one.',
    'The link may have been copied incompletely. Open the consultation again from your dashboard.',
  ],
  link_expired: [
    'This link no longer works',
    'This link has expired. Ask your clinic for a new one.',
    'This link has expired. Open the consultation again from your dashboard to get a fresh link.',
  ],
  wrong_consultation: [
    'Consultation not found',
    'We couldn’t find this consultation. Please check the link, or ask your clinic for a new one.',
    'We couldn’t find this consultation. Open it again from your dashboard.',
  ],
  consultation_ended: [
    'This consultation has ended',
    'This consultation has ended. If you still need to be seen, please contact your clinic.',
    'This consultation has ended. You can start a new one from your dashboard.',
  ],
  waiting_room_full: [
    'The waiting room is full',
    'Too many people are waiting for this consultation right now. Please try again in a few minutes.',
    'Too many people are waiting for this consultation right now.',
  ],
  room_full: [
    'This visit is full',
    'The visit already has as many people as it can hold. Please ask your clinic to let you in when someone leaves.',
    'The visit already has as many people as it can hold. Someone must leave before another person can join.',
  ],
  unsupported_version: [
    'Please reload the page',
    'This page is out of date. Reload the page to continue.',
    'This page is out of date. Reload the page to continue.',
  ],
};

const el = {
  body: document.body,
  status: $('#status'),
  error: $('#error'),
  title: $('#consultation-title'),
  preview: $('#preview'),
  previewOff: $('#preview-off'),
  deviceHelp: $('#device-help'),
  deviceHelpTitle: $('#device-help-title'),
  deviceHelpText: $('#device-help-text'),
  deviceHelpExtra: $('#device-help-extra'),
  retryBtn: $('#retry-btn'),
  deviceSettings: $('#device-settings'),
  cameraSelect: $('#camera-select'),
  micSelect: $('#mic-select'),
  micLevel: $('#mic-level'),
  joinForm: $('#join-form'),
  nameField: $('#name-field'),
  name: $('#name'),
  nameError: $('#name-error'),
  joinNote: $('#join-note'),
  joinBtn: $('#join-btn'),
  waitProvider: $('#wait-provider'),
  waitingPreview: $('#waiting-preview'),
  waitLeaveBtn: $('#wait-leave-btn'),
  stage: $('.stage'),
  tiles: $('#tiles'),
  remotePlaceholder: $('#remote-placeholder'),
  remotePlaceholderText: $('#remote-placeholder-text'),
  timer: $('#call-timer'),
  shareBtn: $('#share-btn'),
  inviteBtn: $('#invite-btn'),
  qualityWarning: $('#quality-warning'),
  sharingNotice: $('#sharing-notice'),
  toast: $('#call-toast'),
  soundBtn: $('#sound-btn'),
  localVideo: $('#local-video'),
  lobbyPanel: $('#lobby-panel'),
  lobbyNotice: $('#lobby-notice'),
  lobbyEmpty: $('#lobby-empty'),
  lobby: $('#lobby'),
  callNotice: $('#call-notice'),
  callSettings: $('#call-settings'),
  muteBtn: $('#mute-btn'),
  cameraBtn: $('#camera-btn'),
  settingsBtn: $('#settings-btn'),
  hangupBtn: $('#hangup-btn'),
  rejoinBtn: $('#rejoin-btn'),
  dashboardLink: $('#dashboard-link'),
  fatalTitle: $('#fatal-title'),
  fatalText: $('#fatal-text'),
  chatBtn: $('#chat-btn'),
  chatPanel: $('#chat-panel'),
  attachBtn: $('#attach-btn'),
  fileInput: $('#file-input'),
};

const consultationId = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const token = tokenFromHash();
// A token is <consultation>.<role>.<expiry>[.<invitation>].<signature> (docs/signaling.md): the
// role is always the second part. Only the server's word counts; this prepares the page.
const role = roleOfToken(token);
const isProvider = role === 'provider';
// Providers and clinicians admit, remove and allow sharing.
const canAdmit = role === 'provider' || role === 'clinician';
const PERSON_ROLES = ['provider', 'patient', 'guest', 'clinician'];

function roleOfToken(t) {
  const parts = t.split('.');
  return parts.length >= 4 ? parts[1] : '';
}

const media = new LocalMedia();
const meter = new MicLevel(el.micLevel);
/** @type {Map<string, PeerSession>} the people in the call */
const sessions = new Map();
/** @type {Map<string, PeerSession>} the patient's monitoring devices: data only, no media, no chat */
const deviceSessions = new Map();
// Roles of the peers we have been told about, for an offer that arrives before its peer_joined.
const peerRoles = new Map();
const MAX_PEER_ROLES = 64;
// What each person in the call said of their media, and whether they may share a screen.
const peerInfo = new Map();
const tiles = new Tiles({ root: el.tiles, canManage: canAdmit });
const quality = new Map(); // peer id -> last measurement
let canShare = canAdmit;
let screenTrack = null;
let screenStream = null;
let callStartedAt = 0;
let lastSpeaker = null;
let lastSpeakerAt = 0;
let invite = null;
const signaling = new SignalingClient({ consultation: consultationId, token });

let screen = 'loading';
let mediaReady = Promise.resolve();
let joined = false; // the user pressed join
let ended = false; // we hung up, were declined, or hit a fatal error
let iceServers = [];
let icePolicy = 'all';
let peerLeft = false;
let waiting = [];
const pendingLobby = new Set(); // ids we admitted or declined, until the lobby updates
let errorTimer = null;
let wakeLock = null;
const baseTitle = document.title;
let consultationTitle = '';

// Chat and files go to the newest session first: after a rejoin the old one lingers for a while.
const chat = new Chat({
  el: {
    button: el.chatBtn,
    badge: $('#chat-badge'),
    panel: el.chatPanel,
    close: $('#chat-close'),
    log: $('#chat-log'),
    form: $('#chat-form'),
    input: $('#chat-input'),
    send: $('#chat-send'),
    hint: $('#chat-hint'),
    error: $('#chat-error'),
    save: $('#chat-save'),
    saveStatus: $('#chat-save-status'),
  },
  role,
  consultationId,
  token,
  myName: () => (signaling.me && signaling.me.name) || '',
  sessions: () => [...sessions.values()].reverse(),
});
const transfers = new Transfers({
  append: (li) => chat.append(li),
  changed: () => chat.changed(),
  notice: (text) => chat.notice(text, 'warning'),
  target: () => chat.target(),
  zoom: {
    dialog: $('#zoom'),
    img: $('#zoom-img'),
    title: $('#zoom-title'),
    zoomIn: $('#zoom-in'),
    zoomOut: $('#zoom-out'),
    fit: $('#zoom-fit'),
    close: $('#zoom-close'),
  },
});

const vitals = new VitalsPanel({
  root: $('#vitals'),
  grid: $('#vitals-grid'),
  status: $('#vitals-status'),
  toggle: $('#vitals-toggle'),
});
const callAlerts = {
  panel: $('#call-alerts'),
  list: new AlertList($('#alerts'), { max: 20 }),
  announce: $('#alerts-announce'),
};

window.telemed = {
  peerConnections: () => [...sessions.values()].map((s) => s.pc),
  /** The connections to the patient's devices (role device), which carry vitals only. */
  deviceConnections: () => [...deviceSessions.values()].map((s) => s.pc),
  /** What the live vitals panel received and drew: readings by code, ECG samples, bad frames. */
  vitals: () => vitals.stats(),
  signaling,
  media,
  sessions,
  /**
   * Send a File or Blob to one person (by peer id; the current peer when omitted); returns the
   * transfer id. The attach button sends to everyone.
   */
  sendFile: (file, peerId) => transfers.send(file, peerId ? sessions.get(peerId) || null : null),
  /** Send a chat message, as typing it and pressing Send does; returns its id or null. */
  sendChat: (text) => chat.send(text),
  transfers: () => transfers.list(),
  /** The Blob of a received, checked file, by transfer id. */
  receivedFile: (id) => transfers.file(id),
  /** Let go of a received file, as its Remove button does. */
  removeFile: (id) => transfers.remove(id),
  /** The received-file limits, for tests: `keep` is the most bytes of received files kept at once. */
  limits: {
    get keep() { return transfers.keepLimit; },
    set keep(n) { transfers.keepLimit = n; },
  },
  chatMessages: () => chat.messages(),
  /** The tiles as shown: name, role, camera and microphone as signaled, screen, quality. */
  tiles: () => tiles.state(),
  /** Share a screen, as the Share screen button does; resolves true when sharing. */
  shareScreen: () => startSharing(),
  /** Stop sharing, as the Stop sharing button does. */
  stopSharing: () => stopSharing(),
  /** The last connection measurements per peer id. */
  quality: () => Object.fromEntries(quality),
  /**
   * What arrives from each person: frames decoded of their camera and of their screen, audio
   * samples received, and the selected candidate pair's local type.
   */
  mediaStats: () => mediaStats(),
};

// ---------- screens and status ----------

function setScreen(name) {
  screen = name;
  el.body.dataset.state = name;
  for (const section of document.querySelectorAll('[data-screen]')) {
    section.hidden = section.dataset.screen !== name;
  }
  // Screen reader users land on the new screen's heading; the call keeps focus where it is.
  if (['waiting', 'ended', 'declined', 'error'].includes(name)) {
    const heading = $(`[data-screen="${name}"] h1`);
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }
}

function computeStatus() {
  if (!joined || ended) return '';
  switch (signaling.state) {
    case 'idle':
    case 'connecting':
      return 'Connecting';
    case 'reconnecting':
      return 'Reconnecting';
    case 'closed':
      return '';
    default:
      break;
  }
  if (sessions.size === 0) return peerLeft ? 'The other side left' : (canAdmit ? 'Waiting for others to join' : 'Waiting for the other side');
  const states = [...sessions.values()].map((s) => s.iceState);
  if (states.some((s) => s === 'connected' || s === 'completed')) return 'Connected';
  if (states.some((s) => s === 'disconnected' || s === 'failed')) return 'Reconnecting';
  return 'Connecting';
}

function renderStatus() {
  const text = computeStatus();
  if (el.status.textContent !== text) el.status.textContent = text;
  el.body.dataset.connection = text ? text.toLowerCase().replace(/\s+/g, '-') : '';
}

function showError(message) {
  if (!message) return;
  el.error.textContent = message;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { el.error.textContent = ''; }, ERROR_CLEAR_MS);
}

function showFatal(code, serverMessage) {
  ended = true;
  teardown();
  const entry = FATAL_TEXT[code];
  el.fatalTitle.textContent = entry ? entry[0] : 'We couldn’t join the consultation';
  let text = entry ? entry[isProvider ? 2 : 1]
    : (serverMessage || 'Something went wrong. Please reload the page, or ask your clinic for a new link.');
  // bad_token covers several causes; for a person's link the server's words say which (removed from
  // the visit, invitation revoked, tampered), where ours can only guess.
  if (code === 'bad_token' && !isProvider && serverMessage) text = serverMessage;
  el.fatalText.textContent = text;
  el.error.textContent = '';
  setScreen('error');
  renderStatus();
}

// Stop everything that uses the network, the camera or the microphone.
function teardown() {
  stopSharing({ signal: false });
  stopCallTimer();
  for (const id of [...sessions.keys()]) removeSession(id);
  for (const id of [...deviceSessions.keys()]) removeSession(id);
  media.stop();
  meter.stop();
  vitals.destroy();
  releaseWakeLock();
}

// ---------- local media and device check ----------

function attachLocalMedia() {
  for (const video of [el.preview, el.waitingPreview, el.localVideo]) {
    if (video.srcObject !== media.stream) video.srcObject = media.stream;
  }
  el.previewOff.hidden = Boolean(media.videoTrack);
  renderControls();
}

function startMedia() {
  mediaReady = (async () => {
    el.joinNote.hidden = false;
    el.joinNote.textContent = 'Starting your camera and microphone…';
    await media.start({
      audioDeviceId: el.micSelect.value || undefined,
      videoDeviceId: el.cameraSelect.value || undefined,
    });
    await refreshDeviceLists();
    renderDeviceHelp();
    if (screen === 'device-check') meter.attach(media.audioTrack);
  })();
  return mediaReady;
}

async function refreshDeviceLists() {
  const devices = await media.devices();
  // Without permission the browser hides the devices, so "none found" would be untrue.
  const blocked = (err) => err && (err.name === 'NotAllowedError' || err.name === 'SecurityError');
  fillSelect(el.cameraSelect, devices.videoinput, media.deviceId('video'), 'Camera',
    blocked(media.videoError) ? 'Camera blocked' : 'No camera found');
  fillSelect(el.micSelect, devices.audioinput, media.deviceId('audio'), 'Microphone',
    blocked(media.audioError) ? 'Microphone blocked' : 'No microphone found');
}

function fillSelect(select, list, currentId, noun, emptyText) {
  select.replaceChildren();
  if (list.length === 0) {
    select.append(h('option', { value: '', text: emptyText }));
    select.disabled = true;
    return;
  }
  list.forEach((d, i) => {
    select.append(h('option', { value: d.deviceId, text: d.label || `${noun} ${i + 1}` }));
  });
  if (currentId && list.some((d) => d.deviceId === currentId)) select.value = currentId;
  select.disabled = false;
}

function renderDeviceHelp() {
  const a = media.audioError;
  const v = media.videoError;
  let help = null;
  if (a && v) help = explainMediaError(a.name === v.name ? 'both' : 'video', a.name === v.name ? a : v);
  else help = explainMediaError('video', v) || explainMediaError('audio', a);

  el.deviceHelp.hidden = !help;
  if (help) {
    el.deviceHelpTitle.textContent = help.title;
    el.deviceHelpText.textContent = help.text;
    el.retryBtn.hidden = !help.canRetry;
    // Two different problems: mention the second one too.
    const second = a && v && a.name !== v.name ? explainMediaError('audio', a) : null;
    el.deviceHelpExtra.hidden = !second;
    el.deviceHelpExtra.textContent = second ? `${second.title}. ${second.text}` : '';
  }

  let note = '';
  if (!media.audioTrack && !media.videoTrack) {
    note = 'You can still join, but the other side won’t see or hear you.';
  } else if (!media.videoTrack) {
    note = 'You’ll join with audio only.';
  } else if (!media.audioTrack) {
    note = 'You’ll join without a microphone: the other side won’t hear you.';
  }
  el.joinNote.textContent = note;
  el.joinNote.hidden = !note;
}

async function switchDevice(kind, deviceId) {
  if (!deviceId) return;
  meter.resume();
  try {
    const track = await media.switchDevice(kind, deviceId);
    await Promise.all([...sessions.values()].map((s) => s.setTrack(kind, track, media.stream)));
  } catch (err) {
    const help = explainMediaError(kind, err);
    showError(help ? `${help.title}. ${help.text}` : 'That device could not be used.');
    // The previous device may have been restored; put it back on the wire.
    const track = media.track(kind);
    await Promise.all([...sessions.values()].map((s) => s.setTrack(kind, track, media.stream)));
  }
  await refreshDeviceLists();
  if (screen === 'device-check') renderDeviceHelp();
  if (screen === 'device-check' || !el.callSettings.hidden) meter.attach(media.audioTrack);
}

// ---------- joining ----------

function validName() {
  const name = el.name.value.trim();
  const length = [...name].length;
  let problem = '';
  if (length === 0) problem = 'Please enter your name, so your provider knows who is waiting.';
  else if (length > 80) problem = 'Please use 80 characters or fewer.';
  el.nameError.textContent = problem;
  el.nameError.hidden = !problem;
  el.name.setAttribute('aria-invalid', problem ? 'true' : 'false');
  if (problem) {
    el.name.focus();
    return null;
  }
  return name;
}

async function join(event) {
  event.preventDefault();
  if (joined) return;
  // The server takes a provider's name from their account and an invited person's from the invitation.
  const name = role === 'patient' ? validName() : 'Provider';
  if (name === null) return;
  meter.resume();
  joined = true;
  el.joinBtn.disabled = true;
  el.joinBtn.textContent = 'Connecting…';
  await mediaReady;
  signaling.connect(name);
  renderStatus();
}

// ---------- signaling ----------

function onWelcome(msg) {
  iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
  icePolicy = msg.ice_transport_policy === 'relay' ? 'relay' : 'all';
  for (const session of [...sessions.values(), ...deviceSessions.values()]) session.updateIceServers(iceServers, icePolicy);
  const c = msg.consultation || {};
  consultationTitle = c.title || '';
  el.title.textContent = consultationTitle;
  if (c.provider_name) {
    el.waitProvider.textContent = `Your appointment is with ${c.provider_name}.`;
    el.waitProvider.hidden = false;
  }

  rememberRoles(msg.peers);
  rememberMedia(msg.peers);
  if (msg.you && typeof msg.you.can_share === 'boolean') canShare = msg.you.can_share || canAdmit;
  if (!msg.resumed) {
    // A fresh session: ids changed, so nothing negotiated before still applies.
    for (const id of [...sessions.keys(), ...deviceSessions.keys()]) removeSession(id);
  }

  if (msg.state === 'waiting') {
    for (const id of [...sessions.keys(), ...deviceSessions.keys()]) removeSession(id);
    enterWaiting();
  } else {
    const present = new Set((msg.peers || []).map((p) => p.id));
    for (const id of [...sessions.keys(), ...deviceSessions.keys()]) if (!present.has(id)) removeSession(id);
    enterCall(msg.peers || []);
  }

  if (canAdmit) {
    waiting = Array.isArray(msg.waiting) ? msg.waiting : [];
    renderLobby();
  }
  renderShare();
  renderStatus();
}

function enterWaiting() {
  if (screen !== 'waiting') {
    meter.stop();
    setScreen('waiting');
  }
}

function enterCall(peers) {
  if (screen !== 'in-call') {
    meter.stop();
    el.callSettings.append(el.deviceSettings);
    setScreen('in-call');
    keepAwake();
    startCallTimer();
  }
  rememberMedia(peers);
  for (const peer of peers) ensureSession(peer, false);
  // The others see our camera and microphone as we have them, not as they guess from the video.
  sendMediaState();
  renderLobby();
  renderRemote();
  renderStatus();
}

function rememberMedia(peers) {
  for (const p of Array.isArray(peers) ? peers : [peers]) {
    if (!p || typeof p.id !== 'string' || isDevicePeer(p)) continue;
    const info = peerInfo.get(p.id) || { media: { audio: true, video: true, screen: false }, canShare: false };
    if (p.media && typeof p.media === 'object') {
      info.media = { audio: p.media.audio !== false, video: p.media.video !== false, screen: p.media.screen === true };
    }
    if (typeof p.can_share === 'boolean') info.canShare = p.can_share;
    peerInfo.set(p.id, info);
  }
}

function sendMediaState() {
  if (screen !== 'in-call' || ended) return;
  const audio = media.audioTrack;
  const video = media.videoTrack;
  signaling.sendMedia({
    audio: Boolean(audio && audio.enabled),
    video: Boolean(video && video.enabled),
    screen: Boolean(screenTrack),
  });
}

function rememberRoles(peers) {
  for (const p of Array.isArray(peers) ? peers : [peers]) {
    if (!p || typeof p.id !== 'string' || typeof p.role !== 'string') continue;
    peerRoles.delete(p.id);
    peerRoles.set(p.id, p.role);
    if (peerRoles.size > MAX_PEER_ROLES) peerRoles.delete(peerRoles.keys().next().value);
  }
}

function isDevicePeer(peer) {
  return (peer.role || peerRoles.get(peer.id)) === 'device';
}

// A device gets a connection of its own kind: no camera or microphone, no chat or files, no video
// tile, and no say in the call's status; what it streams goes to the vitals panel.
function ensureDeviceSession(peer, replace) {
  const existing = deviceSessions.get(peer.id);
  if (existing && !replace) {
    if (peer.name) existing.name = peer.name;
    return existing;
  }
  if (existing) removeSession(peer.id);
  const session = new PeerSession({ peer: { ...peer, role: 'device' }, iceServers, icePolicy, signaling, media });
  vitals.attach(session);
  deviceSessions.set(peer.id, session);
  return session;
}

function ensureSession(peer, replace) {
  if (!peer || !peer.id) return null;
  if (isDevicePeer(peer)) return ensureDeviceSession(peer, replace);
  const existing = sessions.get(peer.id);
  if (existing && !replace) {
    if (peer.name) existing.name = peer.name;
    return existing;
  }
  if (existing) removeSession(peer.id);

  const session = new PeerSession({ peer, iceServers, icePolicy, signaling, media });
  chat.attach(session);
  transfers.attach(session);
  session.addEventListener('track', renderRemote);
  let wasConnected = false;
  session.addEventListener('statechange', () => {
    const connected = ['connected', 'completed'].includes(session.iceState);
    // Encodings exist only once negotiated: cap them when the connection comes up.
    if (connected && !wasConnected) applyCaps();
    wasConnected = connected;
    renderStatus();
    renderRemote();
  });
  if (screenTrack) session.setScreen(screenTrack, screenStream);
  sessions.set(peer.id, session);
  rememberMedia(peer);
  peerLeft = false;
  el.callNotice.hidden = true;
  renderLobby();
  renderRemote();
  renderStatus();
  return session;
}

function removeSession(id) {
  const device = deviceSessions.get(id);
  if (device) {
    deviceSessions.delete(id);
    device.close();
    return;
  }
  const session = sessions.get(id);
  if (!session) return;
  sessions.delete(id);
  peerInfo.delete(id);
  quality.delete(id);
  session.close();
  applyCaps();
  chat.refresh();
  renderRemote();
  renderLobby();
  renderStatus();
}

function onPeerLeft(msg) {
  if (deviceSessions.has(msg.peer)) {
    removeSession(msg.peer);
    return;
  }
  const session = sessions.get(msg.peer);
  if (!session) return;
  const who = session.name || 'The other side';
  removeSession(msg.peer);
  let text = `${who} left the call.`;
  if (msg.reason === 'disconnected') text = `${who} lost their connection and left the call.`;
  else if (msg.reason === 'removed') text = `${who} was removed from the call.`;
  // In a group the others stay: say it once in the status line, the chat keeps the record.
  if (sessions.size > 0) {
    chat.notice(text);
    toast(text);
    return;
  }
  peerLeft = true;
  el.callNotice.textContent = text;
  el.callNotice.hidden = false;
  renderRemote();
  renderStatus();
}

function onDescription(msg) {
  if (screen !== 'in-call' || ended) return;
  let session = sessions.get(msg.from) || deviceSessions.get(msg.from);
  // An offer from someone we have not been told about yet: they offered, so they are the
  // impolite newcomer and we are polite.
  if (!session && msg.type === 'offer') {
    session = ensureSession({ id: msg.from, polite: true, role: peerRoles.get(msg.from) }, false);
  }
  if (session) session.handleDescription(msg.type, msg.sdp);
}

function onCandidate(msg) {
  const session = sessions.get(msg.from) || deviceSessions.get(msg.from);
  if (session) session.handleCandidate(msg.candidate);
}

function onServerError(msg) {
  if (msg.code === 'bad_resume') return; // the client rejoins by itself
  if (msg.fatal) {
    showFatal(msg.code, msg.message);
    return;
  }
  if (msg.code === 'room_full' || msg.code === 'unknown_peer') {
    pendingLobby.clear();
    renderLobby();
  }
  showError(msg.message);
}

function onDeclined() {
  ended = true;
  teardown();
  setScreen('declined');
  renderStatus();
}

function onRemoved() {
  reportQuality();
  ended = true;
  teardown();
  el.error.textContent = '';
  setScreen('removed');
  renderStatus();
}

function onMedia(msg) {
  if (typeof msg.peer !== 'string' || !sessions.has(msg.peer)) return;
  const info = peerInfo.get(msg.peer) || { media: {}, canShare: false };
  info.media = { audio: msg.audio !== false, video: msg.video !== false, screen: msg.screen === true };
  peerInfo.set(msg.peer, info);
  renderRemote();
}

function onShareAllowed(msg) {
  canShare = canAdmit || msg.allowed === true;
  if (!canShare) stopSharing();
  toast(canShare ? 'You may now share your screen.' : 'Screen sharing was turned off for you.');
  renderShare();
}

signaling.addEventListener('statechange', renderStatus);
signaling.addEventListener('welcome', (e) => onWelcome(e.detail));
signaling.addEventListener('lobby', (e) => {
  waiting = Array.isArray(e.detail.waiting) ? e.detail.waiting : [];
  renderLobby();
});
signaling.addEventListener('admitted', (e) => {
  rememberRoles(e.detail.peers);
  enterCall(e.detail.peers || []);
});
signaling.addEventListener('declined', onDeclined);
signaling.addEventListener('removed', onRemoved);
signaling.addEventListener('media', (e) => onMedia(e.detail));
signaling.addEventListener('share_allowed', (e) => onShareAllowed(e.detail));
signaling.addEventListener('peer_joined', (e) => {
  rememberRoles(e.detail.peer);
  if (screen === 'in-call') ensureSession(e.detail.peer, true);
});
signaling.addEventListener('peer_left', (e) => onPeerLeft(e.detail));
signaling.addEventListener('offer', (e) => onDescription(e.detail));
signaling.addEventListener('answer', (e) => onDescription(e.detail));
signaling.addEventListener('candidate', (e) => onCandidate(e.detail));
signaling.addEventListener('error', (e) => onServerError(e.detail));
signaling.addEventListener('alert', (e) => onAlert(e.detail));

// ---------- alerts of the patient's readings (providers only) ----------

function onAlert(msg) {
  if (!canAdmit || ended) return;
  const li = callAlerts.list.add(msg.alert);
  if (!li) return;
  callAlerts.panel.hidden = false;
  // Said once, in words, by screen readers; the list itself stays quiet.
  callAlerts.announce.textContent = `Alert: ${li.querySelector('.alert-what').textContent}, ${li.querySelector('.alert-why').textContent}`;
}

// ---------- the call view ----------

// The people in the call, newest last, as tiles.
function people() {
  return [...sessions.values()].map((session) => {
    const info = peerInfo.get(session.id) || { media: { audio: true, video: true, screen: false }, canShare: false };
    return { id: session.id, name: session.name, role: session.role, session, media: info.media, canShare: info.canShare };
  });
}

function renderRemote() {
  const list = people();
  tiles.sync(list);
  if (list.length === 0) {
    el.soundBtn.hidden = true;
    el.remotePlaceholderText.textContent = peerLeft ? 'The other side left'
      : (canAdmit ? 'Waiting for others to join' : 'Waiting for the other side');
    el.remotePlaceholder.hidden = false;
    return;
  }
  el.remotePlaceholder.hidden = true;
}

function toast(text) {
  el.toast.textContent = text;
  el.toast.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.toast.hidden = true; }, ERROR_CLEAR_MS);
}

// ---------- the call timer ----------

function startCallTimer() {
  callStartedAt = Date.now();
  el.timer.hidden = false;
  tickTimer();
  clearInterval(startCallTimer.interval);
  startCallTimer.interval = setInterval(tickTimer, 1000);
}

function stopCallTimer() {
  clearInterval(startCallTimer.interval);
  el.timer.hidden = true;
}

function tickTimer() {
  const s = Math.floor((Date.now() - callStartedAt) / 1000);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  el.timer.textContent = hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

// ---------- bandwidth, quality and who is speaking ----------

// Each sender caps its video per connection as the group grows (docs/benchmarks.md#group-visits).
function applyCaps() {
  const caps = capsFor(sessions.size + 1, Boolean(screenTrack));
  for (const session of sessions.values()) session.applyCaps(caps).catch(() => {});
}

async function measureQuality() {
  if (screen !== 'in-call' || ended) return;
  await Promise.all([...sessions.values()].map(async (session) => {
    if (session.closed || session.pc.connectionState === 'new') return;
    try {
      const m = await measure(session.pc, quality.get(session.id));
      quality.set(session.id, m);
      tiles.setQuality(session.id, m);
    } catch { /* closed meanwhile */ }
  }));
  const weak = ownConnectionWeak([...quality.values()]);
  if (el.qualityWarning.hidden === weak) el.qualityWarning.hidden = !weak;
}

// The loudest remote voice, from the receivers' audio levels (cheap: no getStats).
function detectSpeaker() {
  if (screen !== 'in-call' || ended) return;
  let best = null;
  let bestLevel = SPEAKING_LEVEL;
  for (const session of sessions.values()) {
    const info = peerInfo.get(session.id);
    if (info && !info.media.audio) continue;
    for (const receiver of session.pc.getReceivers()) {
      if (receiver.track.kind !== 'audio') continue;
      const sources = receiver.getSynchronizationSources ? receiver.getSynchronizationSources() : [];
      const level = sources.length ? sources[0].audioLevel || 0 : 0;
      if (level > bestLevel) {
        best = session.id;
        bestLevel = level;
      }
    }
  }
  const now = Date.now();
  if (best) {
    lastSpeaker = best;
    lastSpeakerAt = now;
  } else if (now - lastSpeakerAt > SPEAKING_HOLD_MS) {
    lastSpeaker = null;
  }
  tiles.setSpeaking(lastSpeaker);
}

async function mediaStats() {
  const out = [];
  for (const session of sessions.values()) {
    const report = await session.pc.getStats();
    const entry = { id: session.id, name: session.name, role: session.role, video: 0, screen: 0, audio: 0, localType: '', videoWidth: 0, screenWidth: 0 };
    const screenMids = new Set(session.pc.getTransceivers()
      .filter((t) => session.isScreenTrack(t.receiver.track)).map((t) => t.mid));
    let pair = null;
    const byId = new Map();
    report.forEach((r) => {
      byId.set(r.id, r);
      if (r.type === 'transport' && r.selectedCandidatePairId) pair = r.selectedCandidatePairId;
    });
    report.forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      if (r.kind === 'audio') entry.audio += r.totalSamplesReceived || 0;
      else if (screenMids.has(r.mid)) {
        entry.screen += r.framesDecoded || 0;
        entry.screenWidth = Math.max(entry.screenWidth, r.frameWidth || 0);
      } else {
        entry.video += r.framesDecoded || 0;
        entry.videoWidth = Math.max(entry.videoWidth, r.frameWidth || 0);
      }
    });
    const p = pair && byId.get(pair);
    const local = p && byId.get(p.localCandidateId);
    entry.localType = local ? local.candidateType : '';
    out.push(entry);
  }
  return out;
}

// A summary of each connection at the end of the call, kept with the visit for support
// (docs/api.md#call-quality). Sent once; a call must end even when it cannot be sent.
let qualityReported = false;
function reportQuality() {
  if (qualityReported || !callStartedAt) return;
  const list = [...sessions.values()].filter((session) => PERSON_ROLES.includes(session.role));
  if (list.length === 0) return;
  qualityReported = true;
  const summary = {
    duration_s: Math.round((Date.now() - callStartedAt) / 1000),
    peers: list.slice(0, 8).map((session) => peerSummary(session, quality.get(session.id) || null)),
  };
  postCallQuality(consultationId, token, summary).catch((err) => {
    console.warn('telemed: the call quality summary was not kept', err);
  });
}

// ---------- screen sharing ----------

function renderShare() {
  el.shareBtn.hidden = !canShare || !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  el.shareBtn.setAttribute('aria-pressed', String(Boolean(screenTrack)));
  el.shareBtn.querySelector('.ctl-label').textContent = screenTrack ? 'Stop sharing' : 'Share screen';
  el.sharingNotice.hidden = !screenTrack;
}

async function startSharing() {
  if (screenTrack) return true;
  if (!canShare) {
    showError('The provider has not allowed you to share your screen.');
    return false;
  }
  let stream;
  try {
    // 15 frames a second at most: a document, an X-ray or a chart needs sharpness, not motion, and
    // the sharer encodes it once per other person.
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 15 } }, audio: false });
  } catch (err) {
    if (err && err.name !== 'NotAllowedError' && err.name !== 'AbortError') {
      showError('Your screen could not be shared. Please try again.');
    }
    return false;
  }
  if (ended || !canShare) {
    for (const t of stream.getTracks()) t.stop();
    return false;
  }
  screenTrack = stream.getVideoTracks()[0];
  screenStream = stream;
  screenTrack.contentHint = 'detail';
  // The browser's own "Stop sharing" ends the track.
  screenTrack.addEventListener('ended', () => stopSharing());
  await Promise.all([...sessions.values()].map((session) => session.setScreen(screenTrack, screenStream)));
  applyCaps();
  sendMediaState();
  renderShare();
  return true;
}

function stopSharing({ signal = true } = {}) {
  if (!screenTrack) return;
  const track = screenTrack;
  screenTrack = null;
  screenStream = null;
  track.stop();
  for (const session of sessions.values()) session.setScreen(null).catch(() => {});
  applyCaps();
  if (signal) sendMediaState();
  renderShare();
}

function renderControls() {
  const audio = media.audioTrack;
  const video = media.videoTrack;
  setToggle(el.muteBtn, audio, 'No microphone');
  setToggle(el.cameraBtn, video, 'No camera');
  el.stage.classList.toggle('local-off', !video || !video.enabled);
}

function setToggle(button, track, missingText) {
  button.disabled = !track;
  button.setAttribute('aria-pressed', String(Boolean(track) && !track.enabled));
  if (track) button.removeAttribute('title');
  else button.title = missingText;
}

function toggle(kind) {
  const track = media.track(kind);
  if (!track) return;
  media.setEnabled(kind, !track.enabled);
  renderControls();
  sendMediaState();
}

function toggleSettings() {
  const open = el.callSettings.hidden;
  el.callSettings.hidden = !open;
  el.settingsBtn.setAttribute('aria-expanded', String(open));
  if (open) {
    meter.attach(media.audioTrack);
    el.cameraSelect.focus();
  } else {
    meter.stop();
  }
}

function hangUp() {
  if (ended) return;
  reportQuality();
  ended = true;
  signaling.leave();
  teardown();
  el.error.textContent = '';
  setScreen('ended');
  renderStatus();
}

// ---------- chat panel: files ----------

// In a group visit a file goes to everyone, one transfer each, like a chat message.
function sendFiles(files) {
  const targets = chat.targets();
  for (const file of files) {
    if (targets.length === 0) transfers.send(file); // says why it cannot be sent
    for (const target of targets) transfers.send(file, target.session);
  }
}

function setUpFiles() {
  const renderAttach = () => {
    el.attachBtn.disabled = !chat.available;
    el.attachBtn.title = chat.available ? '' : 'Files can be sent once the other side is connected';
  };
  chat.addEventListener('availability', renderAttach);
  renderAttach();
  el.attachBtn.addEventListener('click', () => el.fileInput.click());
  el.fileInput.addEventListener('change', () => {
    sendFiles([...el.fileInput.files]);
    el.fileInput.value = '';
  });

  // A file dropped onto the chat panel is sent; one dropped anywhere else must not
  // make the browser open it in place of the call.
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
  let depth = 0;
  const panel = el.chatPanel;
  panel.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    depth += 1;
    panel.classList.add('is-dragging');
  });
  panel.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) panel.classList.remove('is-dragging');
  });
  panel.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = chat.available ? 'copy' : 'none';
  });
  panel.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    panel.classList.remove('is-dragging');
    if (e.dataTransfer.files.length) sendFiles([...e.dataTransfer.files]);
  });
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (e) => {
      if (hasFiles(e) && !e.defaultPrevented) {
        e.preventDefault();
        if (e.dataTransfer) e.dataTransfer.dropEffect = 'none';
      }
    });
  }
}

// ---------- provider's waiting room ----------

function waitedFor(since) {
  const t = Date.parse(since);
  if (Number.isNaN(t)) return '';
  const minutes = Math.floor(Math.max(0, Date.now() - t) / 60000);
  if (minutes < 1) return 'Just arrived';
  if (minutes < 60) return `Waiting ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return `Waiting ${hours} h ${minutes % 60} min`;
}

function renderLobby() {
  if (!canAdmit) {
    el.lobbyPanel.hidden = true;
    return;
  }
  for (const id of [...pendingLobby]) if (!waiting.some((p) => p.id === id)) pendingLobby.delete(id);

  const count = waiting.length;
  el.lobbyPanel.hidden = !(count > 0 || sessions.size === 0);
  el.lobbyEmpty.hidden = count > 0;
  el.lobbyPanel.classList.toggle('has-waiting', count > 0);
  let notice = '';
  if (count === 1) notice = `${waiting[0].name} (${roleWord(waiting[0].role || 'patient').toLowerCase()}) is waiting to join`;
  else if (count > 1) notice = `${count} people are waiting to join`;
  el.lobbyNotice.textContent = notice;
  el.lobbyNotice.hidden = !notice;
  const base = consultationTitle ? `${consultationTitle} · telemed` : baseTitle;
  document.title = count ? `(${count} waiting) ${base}` : base;

  // Keep keyboard focus on the same entry across re-renders.
  const focused = document.activeElement;
  const focusKey = focused && el.lobby.contains(focused)
    ? (focused.dataset.admit ? `admit:${focused.dataset.admit}` : `decline:${focused.dataset.decline}`)
    : null;

  el.lobby.replaceChildren(...waiting.map((p) => {
    const busy = pendingLobby.has(p.id);
    return h('li', { class: 'lobby-entry' },
      h('div', { class: 'lobby-who' },
        h('span', { class: 'lobby-name', text: p.name }),
        h('span', { class: 'lobby-role', dataset: { role: p.role || 'patient' }, text: roleWord(p.role || 'patient') }),
        h('span', { class: 'lobby-since', dataset: { since: p.since || '' }, text: waitedFor(p.since) })),
      h('div', { class: 'lobby-actions' },
        h('button', {
          type: 'button', class: 'btn btn-primary', dataset: { admit: p.id },
          'aria-label': `Admit ${p.name}`, disabled: busy, text: 'Admit',
        }),
        h('button', {
          type: 'button', class: 'btn btn-quiet', dataset: { decline: p.id },
          'aria-label': `Decline ${p.name}`, disabled: busy, text: 'Decline',
        })));
  }));

  if (focusKey) {
    const [action, id] = focusKey.split(':');
    const again = [...el.lobby.querySelectorAll(`button[data-${action}]`)].find((b) => b.dataset[action] === id);
    if (again && !again.disabled) again.focus();
  }
}

function tickLobby() {
  for (const span of el.lobby.querySelectorAll('.lobby-since')) {
    span.textContent = waitedFor(span.dataset.since);
  }
}

el.lobby.addEventListener('click', (e) => {
  const button = e.target.closest('button');
  if (!button || button.disabled) return;
  const id = button.dataset.admit || button.dataset.decline;
  if (!id) return;
  if (button.dataset.admit) signaling.admit(id);
  else signaling.decline(id);
  pendingLobby.add(id);
  renderLobby();
});

// ---------- screen wake lock (phones dim the screen mid-call otherwise) ----------

async function keepAwake() {
  if (!navigator.wakeLock || wakeLock) return;
  try {
    wakeLock = await navigator.wakeLock.request('screen');
    wakeLock.addEventListener('release', () => { wakeLock = null; });
  } catch { /* not allowed right now; harmless */ }
}

function releaseWakeLock() {
  if (wakeLock) wakeLock.release().catch(() => {});
  wakeLock = null;
}

// ---------- start ----------

function init() {
  if (!isProvider) {
    el.dashboardLink.remove();
    $('#error-dashboard-link').remove();
  }
  if (!consultationId || !token) {
    showFatal('missing_token');
    return;
  }
  if (!PERSON_ROLES.includes(role)) {
    showFatal('bad_token');
    return;
  }

  if (role !== 'patient') {
    // The provider's name comes from their account, an invited person's from the invitation.
    el.nameField.hidden = true;
    el.name.required = false;
  }
  if (isProvider) {
    el.joinBtn.textContent = 'Start consultation';
    el.dashboardLink.hidden = false;
    $('#error-dashboard-link').hidden = false;
    el.inviteBtn.hidden = false;
    el.lobbyEmpty.textContent = 'No one is waiting yet. Send your patient their link, or invite someone.';
    el.inviteBtn.addEventListener('click', () => {
      if (!invite) {
        invite = new InviteDialog({ consultationId, headers: { Authorization: `Bearer ${token}` }, title: consultationTitle });
      }
      invite.open();
    });
  } else if (role === 'clinician') {
    el.joinBtn.textContent = 'Join';
  }
  tiles.addEventListener('remove', (e) => {
    if (window.confirm(`Remove ${e.detail.name} from the call? Their link will stop working for this consultation.`)) {
      signaling.remove(e.detail.id);
    }
  });
  tiles.addEventListener('allowshare', (e) => {
    // Only the person concerned hears share_allowed: keep our own record of what we allowed.
    if (!signaling.allowShare(e.detail.id, e.detail.allowed)) return;
    const info = peerInfo.get(e.detail.id);
    if (info) info.canShare = e.detail.allowed;
    toast(e.detail.allowed ? `${e.detail.name} may now share a screen.` : `${e.detail.name} can no longer share a screen.`);
    renderRemote();
  });
  tiles.addEventListener('blocked', () => { el.soundBtn.hidden = false; });
  el.shareBtn.addEventListener('click', () => (screenTrack ? stopSharing() : startSharing()));

  media.addEventListener('change', attachLocalMedia);
  el.joinForm.addEventListener('submit', join);
  el.name.addEventListener('input', () => {
    if (!el.nameError.hidden) validName();
  });
  el.retryBtn.addEventListener('click', () => { meter.resume(); startMedia(); });
  el.cameraSelect.addEventListener('change', () => switchDevice('video', el.cameraSelect.value));
  el.micSelect.addEventListener('change', () => switchDevice('audio', el.micSelect.value));
  el.muteBtn.addEventListener('click', () => toggle('audio'));
  el.cameraBtn.addEventListener('click', () => toggle('video'));
  el.settingsBtn.addEventListener('click', toggleSettings);
  el.hangupBtn.addEventListener('click', hangUp);
  $('#call-alerts-hide').addEventListener('click', () => {
    callAlerts.panel.hidden = true;
  });
  setUpFiles();
  el.waitLeaveBtn.addEventListener('click', hangUp);
  el.rejoinBtn.addEventListener('click', () => location.reload());
  el.soundBtn.addEventListener('click', () => {
    tiles.unmute();
    el.soundBtn.hidden = true;
  });
  // Any click counts as the gesture browsers want before audio processing runs.
  document.addEventListener('pointerdown', () => meter.resume(), { once: true });

  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', () => refreshDeviceLists());
  }

  // Leaving the page is hanging up: otherwise the other side waits out the grace period,
  // and a reloaded patient could not be admitted while their old self still holds the room.
  window.addEventListener('pagehide', () => {
    if (joined && !ended) {
      reportQuality();
      signaling.leave();
    }
    transfers.revokeAll();
  });
  window.addEventListener('pageshow', (e) => {
    if (e.persisted && joined) location.reload();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && screen === 'in-call' && !ended) keepAwake();
  });
  setInterval(tickLobby, LOBBY_TICK_MS);
  setInterval(measureQuality, QUALITY_MS);
  setInterval(detectSpeaker, SPEAKING_MS);

  renderControls();
  renderShare();
  setScreen('device-check');
  startMedia();
}

init();
