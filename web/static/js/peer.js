// One RTCPeerConnection to one remote participant, negotiated with the W3C
// "perfect negotiation" pattern as docs/signaling.md prescribes.

const DISCONNECTED_RESTART_MS = 3000;

// Data channel labels of docs/datachannels.md.
export const CHAT_LABEL = 'telemed-chat';
export const FILE_LABEL = 'telemed-file';
// Channels a monitoring device opens (docs/monitoring.md).
export const DEVICE_LABELS = ['telemed-vitals', 'telemed-waveform'];

/**
 * Events: `track` (remoteStream or screenStream changed), `statechange` (ICE or connection
 * state changed), `closed`, `chatchannel` (detail: a `telemed-chat` RTCDataChannel,
 * ours or the peer's) and `filechannel` (detail: a `telemed-file` channel the peer
 * opened, that is, an incoming file). `chatChannels` lists every chat channel so far,
 * for listeners that attach after the constructor made ours.
 *
 * A peer with the role `device` (a monitoring agent) gets no camera or microphone; the
 * `telemed-vitals` and `telemed-waveform` channels it opens are `vitalschannel` events
 * (detail: the channel), and `vitalsChannels` lists the open ones.
 */
export class PeerSession extends EventTarget {
  #signaling;
  #makingOffer = false;
  #ignoreOffer = false;
  #settingRemoteAnswer = false;
  // The polite side waits for the newcomer's first offer instead of racing it.
  #mayOffer;
  #pendingCandidates = [];
  #chain = Promise.resolve();
  #disconnectTimer = null;
  // Our screen's transceiver while or since we shared; kept (inactive) for the next share.
  #screenTx = null;
  // Receivers of the peer's screen: every video m-line after the first (the camera's).
  #screenReceivers = new WeakSet();

  /**
   * @param {object} opts
   * @param {{id:string, name?:string, role?:string, polite?:boolean}} opts.peer
   * @param {RTCIceServer[]} opts.iceServers
   * @param {RTCIceTransportPolicy} [opts.icePolicy] 'relay' keeps media on TURN
   * @param {import('./protocol.js').SignalingClient} opts.signaling
   * @param {import('./devices.js').LocalMedia} opts.media
   */
  constructor({ peer, iceServers, icePolicy, signaling, media }) {
    super();
    this.id = peer.id;
    this.name = peer.name || '';
    this.role = peer.role || '';
    this.polite = Boolean(peer.polite);
    this.isDevice = this.role === 'device';
    this.closed = false;
    this.remoteStream = new MediaStream();
    /** The peer's shared screen while they share (its own stream: docs/signaling.md#group-visits) */
    this.screenStream = new MediaStream();
    /** @type {RTCDataChannel[]} every telemed-chat channel, oldest first */
    this.chatChannels = [];
    /** @type {RTCDataChannel[]} a device's open vitals and waveform channels */
    this.vitalsChannels = [];
    this.#signaling = signaling;
    this.#mayOffer = !this.polite;

    this.pc = new RTCPeerConnection({
      iceServers: normalizeIceServers(iceServers),
      iceTransportPolicy: icePolicy === 'relay' ? 'relay' : 'all',
    });
    this.pc.addEventListener('negotiationneeded', () => this.#negotiate());
    this.pc.addEventListener('icecandidate', (e) => {
      if (e.candidate && !this.closed) this.#signaling.sendCandidate(this.id, e.candidate);
    });
    this.pc.addEventListener('track', (e) => this.#onTrack(e.track, e.transceiver));
    this.pc.addEventListener('iceconnectionstatechange', () => this.#onIceState());
    this.pc.addEventListener('connectionstatechange', () => this.#changed());
    this.pc.addEventListener('datachannel', (e) => this.#onDataChannel(e.channel));

    // A device sends and receives no media: it never gets our camera or microphone.
    if (!this.isDevice) {
      const stream = media.stream;
      for (const track of media.tracks) this.pc.addTrack(track, stream);
    }
    if (!this.polite) {
      // The offer decides which media both sides can send: offer to receive
      // a kind even when we have no device for it ourselves.
      for (const kind of this.isDevice ? [] : ['audio', 'video']) {
        if (!media.track(kind)) this.pc.addTransceiver(kind, { direction: 'recvonly' });
      }
      // The newcomer opens the chat channel now, so that it is part of the first offer
      // (towards a device too: the offer needs something to connect).
      this.#addChatChannel(this.pc.createDataChannel(CHAT_LABEL, { ordered: true }));
    }
  }

  get iceState() { return this.pc.iceConnectionState; }

  /**
   * Takes fresh ICE servers (a resumed session brings new TURN credentials) and the server's
   * policy, so that an ICE restart gathers with credentials that still work.
   * @param {RTCIceServer[]} iceServers
   * @param {RTCIceTransportPolicy} [icePolicy]
   */
  updateIceServers(iceServers, icePolicy) {
    try {
      const config = this.pc.getConfiguration();
      config.iceServers = normalizeIceServers(iceServers);
      if (icePolicy) config.iceTransportPolicy = icePolicy === 'relay' ? 'relay' : 'all';
      this.pc.setConfiguration(config);
    } catch (err) {
      console.warn('telemed: cannot update ICE servers', err);
    }
  }

  /** Handle an `offer` or `answer` message from this peer. */
  handleDescription(type, sdp) {
    return this.#enqueue(() => this.#onDescription({ type, sdp }));
  }

  /** Handle a `candidate` message (already converted to RTCIceCandidateInit). */
  handleCandidate(init) {
    return this.#enqueue(() => this.#onCandidate(init));
  }

  /** Put a (new) local track on the wire, or stop sending a kind with null. */
  async setTrack(kind, track, stream) {
    if (this.closed || this.isDevice) return;
    const transceivers = this.pc.getTransceivers().filter(
      (t) => !t.stopped && t.currentDirection !== 'stopped' && t.receiver.track.kind === kind
        && t !== this.#screenTx && !this.#screenReceivers.has(t.receiver),
    );
    const tx = transceivers.find((t) => t.sender.track) || transceivers[0];
    if (!tx) {
      if (track) this.pc.addTrack(track, stream);
      return;
    }
    await tx.sender.replaceTrack(track);
    if (track && (tx.direction === 'recvonly' || tx.direction === 'inactive')) {
      // Changing direction needs a renegotiation; negotiationneeded takes care of it.
      tx.direction = tx.direction === 'recvonly' ? 'sendrecv' : 'sendonly';
    }
  }

  /**
   * Share a screen with this peer (a track of its own, in a stream of its own), or stop with null.
   * The transceiver stays, inactive, for the next share: no m-line is ever taken away.
   */
  async setScreen(track, stream) {
    if (this.closed || this.isDevice) return;
    const tx = this.#screenTx;
    if (!track) {
      if (tx && !tx.stopped) {
        await tx.sender.replaceTrack(null);
        tx.direction = 'inactive';
      }
      return;
    }
    if (!tx || tx.stopped) {
      // addTransceiver, not addTrack: addTrack could reuse the camera's m-line when we have no camera.
      this.#screenTx = this.pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
      return;
    }
    await tx.sender.replaceTrack(track);
    tx.direction = 'sendonly';
  }

  /**
   * Cap what we send: `camera` and `screen` are {maxBitrate, scaleResolutionDownBy?}. Audio keeps
   * the highest priority, so that congestion takes video first. Senders not yet negotiated are
   * skipped; call again once connected.
   */
  async applyCaps({ camera, screen }) {
    if (this.closed || this.isDevice) return;
    await Promise.all(this.pc.getSenders().map(async (sender) => {
      const kind = sender.track ? sender.track.kind : null;
      if (!kind) return;
      const params = sender.getParameters();
      if (!params.encodings || params.encodings.length === 0) return;
      const isScreen = this.#screenTx && sender === this.#screenTx.sender;
      for (const enc of params.encodings) {
        if (kind === 'audio') {
          enc.priority = 'high';
          enc.networkPriority = 'high';
        } else {
          const cap = isScreen ? screen : camera;
          if (!cap) continue;
          enc.maxBitrate = cap.maxBitrate;
          if (cap.scaleResolutionDownBy) enc.scaleResolutionDownBy = cap.scaleResolutionDownBy;
          enc.priority = isScreen ? 'medium' : 'low';
          enc.networkPriority = isScreen ? 'medium' : 'low';
        }
      }
      try {
        await sender.setParameters(params);
      } catch (err) {
        console.debug('telemed: could not cap a sender', err);
      }
    }));
  }

  /** Whether a remote track is the peer's screen (rather than their camera). */
  isScreenTrack(track) {
    return this.screenStream.getTracks().includes(track);
  }

  /** The newest chat channel that is open, or null. */
  get openChatChannel() {
    for (let i = this.chatChannels.length - 1; i >= 0; i -= 1) {
      if (this.chatChannels[i].readyState === 'open') return this.chatChannels[i];
    }
    return null;
  }

  /** Open a channel for one outgoing file. */
  createFileChannel() {
    if (this.closed) throw new Error('the connection is closed');
    const channel = this.pc.createDataChannel(FILE_LABEL, { ordered: true });
    channel.binaryType = 'arraybuffer';
    return channel;
  }

  restartIce() {
    if (this.closed) return;
    this.pc.restartIce();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#disconnectTimer);
    this.pc.close();
    for (const t of this.remoteStream.getTracks()) this.remoteStream.removeTrack(t);
    for (const t of this.screenStream.getTracks()) this.screenStream.removeTrack(t);
    this.dispatchEvent(new Event('closed'));
  }

  // ---- internals ----

  // Signaling messages from one peer are handled strictly in order.
  #enqueue(fn) {
    this.#chain = this.#chain.then(() => (this.closed ? undefined : fn())).catch((err) => {
      console.warn(`telemed: negotiation with ${this.id} failed`, err);
    });
    return this.#chain;
  }

  async #negotiate() {
    if (this.closed || !this.#mayOffer) return;
    // negotiationneeded fires again when the state returns to stable.
    if (this.pc.signalingState !== 'stable') return;
    try {
      this.#makingOffer = true;
      await this.pc.setLocalDescription();
      const desc = this.pc.localDescription;
      if (desc && desc.type === 'offer' && !this.closed) this.#signaling.sendOffer(this.id, desc.sdp);
    } catch (err) {
      console.warn('telemed: could not create an offer', err);
    } finally {
      this.#makingOffer = false;
    }
  }

  async #onDescription(description) {
    const pc = this.pc;
    const readyForOffer = !this.#makingOffer
      && (pc.signalingState === 'stable' || this.#settingRemoteAnswer);
    const offerCollision = description.type === 'offer' && !readyForOffer;
    this.#ignoreOffer = !this.polite && offerCollision;
    if (this.#ignoreOffer) return;

    this.#settingRemoteAnswer = description.type === 'answer';
    try {
      // On a collision the polite side's setRemoteDescription rolls back implicitly.
      await pc.setRemoteDescription(description);
    } finally {
      this.#settingRemoteAnswer = false;
    }
    await this.#flushCandidates();

    if (description.type === 'offer') {
      await pc.setLocalDescription();
      const desc = pc.localDescription;
      if (desc && !this.closed) this.#signaling.sendAnswer(this.id, desc.sdp);
      if (!this.#mayOffer) {
        // First negotiation done; from now on either side may renegotiate, and
        // a negotiationneeded we skipped fires again if it is still needed.
        this.#mayOffer = true;
      }
    }
  }

  async #onCandidate(init) {
    if (!this.pc.remoteDescription) {
      this.#pendingCandidates.push(init);
      return;
    }
    await this.#addCandidate(init);
  }

  async #flushCandidates() {
    const pending = this.#pendingCandidates;
    this.#pendingCandidates = [];
    for (const c of pending) await this.#addCandidate(c);
  }

  async #addCandidate(init) {
    try {
      await this.pc.addIceCandidate(init);
    } catch (err) {
      // Candidates of an offer we ignored, or of an older ICE generation, are expected to fail.
      if (!this.#ignoreOffer) console.debug('telemed: ignored an ICE candidate', err);
    }
  }

  #onTrack(track, transceiver) {
    const screen = track.kind === 'video' && transceiver && !this.#isCameraLine(transceiver);
    if (screen) this.#screenReceivers.add(transceiver.receiver);
    const stream = screen ? this.screenStream : this.remoteStream;
    if (!stream.getTracks().includes(track)) {
      // One track per kind: a renegotiated track replaces the old one.
      for (const t of stream.getTracks()) {
        if (t.kind === track.kind) stream.removeTrack(t);
      }
      stream.addTrack(track);
    }
    track.addEventListener('ended', () => {
      stream.removeTrack(track);
      this.dispatchEvent(new Event('track'));
    });
    track.addEventListener('unmute', () => this.dispatchEvent(new Event('track')));
    track.addEventListener('mute', () => this.dispatchEvent(new Event('track')));
    this.dispatchEvent(new Event('track'));
  }

  // The camera's video is the first video m-line: the newcomer's offer makes it (its camera, or a
  // recvonly transceiver) before any screen, and screens always get m-lines of their own.
  #isCameraLine(transceiver) {
    const videos = this.pc.getTransceivers()
      .filter((t) => t.mid !== null && t.receiver.track.kind === 'video')
      .sort((a, b) => midOrder(a.mid) - midOrder(b.mid));
    return videos.length === 0 || videos[0] === transceiver;
  }

  #onIceState() {
    const state = this.pc.iceConnectionState;
    clearTimeout(this.#disconnectTimer);
    if (!this.polite && !this.closed) {
      if (state === 'failed') {
        this.restartIce();
      } else if (state === 'disconnected') {
        this.#disconnectTimer = setTimeout(() => {
          if (this.pc.iceConnectionState === 'disconnected') this.restartIce();
        }, DISCONNECTED_RESTART_MS);
      }
    }
    this.#changed();
  }

  #onDataChannel(channel) {
    if (this.closed) return;
    if (channel.label === CHAT_LABEL) {
      this.#addChatChannel(channel);
    } else if (channel.label === FILE_LABEL) {
      channel.binaryType = 'arraybuffer';
      // Listeners attach synchronously, before the channel's first message can arrive.
      this.dispatchEvent(new CustomEvent('filechannel', { detail: channel }));
    } else if (this.isDevice && DEVICE_LABELS.includes(channel.label)) {
      this.vitalsChannels.push(channel);
      channel.addEventListener('close', () => {
        this.vitalsChannels = this.vitalsChannels.filter((c) => c !== channel);
      });
      this.dispatchEvent(new CustomEvent('vitalschannel', { detail: channel }));
    }
    // Other labels are the application's own: ignored.
  }

  #addChatChannel(channel) {
    channel.binaryType = 'arraybuffer';
    this.chatChannels.push(channel);
    // A closed channel is forgotten: sending picks the newest open one.
    channel.addEventListener('close', () => {
      this.chatChannels = this.chatChannels.filter((c) => c !== channel);
    });
    this.dispatchEvent(new CustomEvent('chatchannel', { detail: channel }));
  }

  #changed() {
    this.dispatchEvent(new Event('statechange'));
  }
}

// Chromium's mids are the m-line numbers; any other form sorts after them, in order of arrival.
function midOrder(mid) {
  const n = Number(mid);
  return Number.isInteger(n) ? n : Number.MAX_SAFE_INTEGER;
}

// Pass only what RTCPeerConnection understands; a bad entry must not break the call.
function normalizeIceServers(list) {
  if (!Array.isArray(list)) return [];
  const out = [];
  for (const s of list) {
    if (!s || !s.urls) continue;
    const entry = { urls: s.urls };
    if (s.username) entry.username = s.username;
    if (s.credential) entry.credential = s.credential;
    out.push(entry);
  }
  return out;
}
