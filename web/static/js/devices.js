// Camera and microphone: acquiring, switching, listing, and a level meter.

const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const VIDEO_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

function audioConstraint(deviceId) {
  return deviceId ? { ...AUDIO_CONSTRAINTS, deviceId: { exact: deviceId } } : { ...AUDIO_CONSTRAINTS };
}

function videoConstraint(deviceId) {
  return deviceId ? { ...VIDEO_CONSTRAINTS, deviceId: { exact: deviceId } } : { ...VIDEO_CONSTRAINTS };
}

function insecureContextError() {
  const err = new Error('Camera access needs a secure (https) connection.');
  err.name = 'InsecureContextError';
  return err;
}

async function permissionState(name) {
  try {
    const status = await navigator.permissions.query({ name });
    return status.state;
  } catch {
    return 'unknown';
  }
}

/**
 * The local camera and microphone.
 *
 * `stream` is replaced by a new MediaStream whenever a track changes, so that
 * <video> elements reliably pick up the new track; listen for `change`.
 * `audioError` / `videoError` hold the DOMException that kept a kind from
 * starting (null when it works or was not asked for).
 */
export class LocalMedia extends EventTarget {
  stream = new MediaStream();
  audioError = null;
  videoError = null;

  get supported() {
    return Boolean(globalThis.navigator && navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  }

  get audioTrack() { return this.stream.getAudioTracks()[0] || null; }
  get videoTrack() { return this.stream.getVideoTracks()[0] || null; }
  get tracks() { return this.stream.getTracks(); }

  track(kind) { return kind === 'audio' ? this.audioTrack : this.videoTrack; }

  /** Start both kinds, falling back to whichever one works. */
  async start({ audioDeviceId, videoDeviceId } = {}) {
    this.stop();
    this.audioError = null;
    this.videoError = null;
    if (!this.supported) {
      this.audioError = this.videoError = insecureContextError();
      this.#changed();
      return;
    }
    const gum = (c) => navigator.mediaDevices.getUserMedia(c);
    try {
      const s = await gum({ audio: audioConstraint(audioDeviceId), video: videoConstraint(videoDeviceId) });
      this.#setTracks(s.getTracks());
      return;
    } catch (err) {
      if (err.name === 'NotAllowedError' || err.name === 'SecurityError') {
        // Asking again would only repeat the prompt; try just a kind the user already allowed.
        const [cam, mic] = await Promise.all([permissionState('camera'), permissionState('microphone')]);
        this.audioError = this.videoError = err;
        if (mic === 'granted') await this.#tryKind('audio', audioDeviceId);
        if (cam === 'granted') await this.#tryKind('video', videoDeviceId);
        this.#changed();
        return;
      }
    }
    // One kind is missing, busy or over-constrained: find out which works.
    await this.#tryKind('audio', audioDeviceId);
    await this.#tryKind('video', videoDeviceId);
    this.#changed();
  }

  async #tryKind(kind, deviceId) {
    const constraints = kind === 'audio'
      ? { audio: audioConstraint(deviceId) }
      : { video: videoConstraint(deviceId) };
    try {
      const s = await navigator.mediaDevices.getUserMedia(constraints);
      const track = s.getTracks()[0];
      this.#replace(kind, track);
      if (kind === 'audio') this.audioError = null; else this.videoError = null;
      return track;
    } catch (err) {
      if (kind === 'audio') this.audioError = err; else this.videoError = err;
      return null;
    }
  }

  /**
   * Switch one kind to another device. The old track is stopped first because
   * phones often cannot open two cameras at once. Returns the new track, or
   * throws after restoring the previous device when possible.
   */
  async switchDevice(kind, deviceId) {
    if (!this.supported) throw insecureContextError();
    const old = this.track(kind);
    const enabled = old ? old.enabled : true;
    const oldDeviceId = old ? old.getSettings().deviceId : undefined;
    if (old) {
      old.stop();
      this.#remove(old);
    }
    const constraints = kind === 'audio' ? { audio: audioConstraint(deviceId) } : { video: videoConstraint(deviceId) };
    try {
      const s = await navigator.mediaDevices.getUserMedia(constraints);
      const track = s.getTracks()[0];
      track.enabled = enabled;
      this.#replace(kind, track);
      if (kind === 'audio') this.audioError = null; else this.videoError = null;
      this.#changed();
      return track;
    } catch (err) {
      if (kind === 'audio') this.audioError = err; else this.videoError = err;
      if (oldDeviceId && oldDeviceId !== deviceId) {
        const back = await this.#tryKind(kind, oldDeviceId);
        if (back) back.enabled = enabled;
      }
      this.#changed();
      throw err;
    }
  }

  /** Turn a kind on or off without releasing the device (track.enabled). */
  setEnabled(kind, enabled) {
    const t = this.track(kind);
    if (t) t.enabled = enabled;
  }

  isEnabled(kind) {
    const t = this.track(kind);
    return Boolean(t && t.enabled && t.readyState === 'live');
  }

  deviceId(kind) {
    const t = this.track(kind);
    return t ? t.getSettings().deviceId || '' : '';
  }

  /** { audioinput: MediaDeviceInfo[], videoinput: MediaDeviceInfo[] } */
  async devices() {
    const out = { audioinput: [], videoinput: [] };
    if (!this.supported || !navigator.mediaDevices.enumerateDevices) return out;
    try {
      for (const d of await navigator.mediaDevices.enumerateDevices()) {
        // Before permission is granted devices have no id; they are not selectable.
        if (out[d.kind] && d.deviceId) out[d.kind].push(d);
      }
    } catch { /* leave empty */ }
    return out;
  }

  stop() {
    for (const t of this.stream.getTracks()) t.stop();
    if (this.stream.getTracks().length) {
      this.stream = new MediaStream();
      this.#changed();
    }
  }

  #setTracks(tracks) {
    this.stream = new MediaStream(tracks);
    this.#changed();
  }

  #replace(kind, track) {
    const others = this.stream.getTracks().filter((t) => t.kind !== kind);
    for (const t of this.stream.getTracks()) if (t.kind === kind && t !== track) t.stop();
    this.stream = new MediaStream([...others, track]);
  }

  #remove(track) {
    this.stream = new MediaStream(this.stream.getTracks().filter((t) => t !== track));
  }

  #changed() {
    this.dispatchEvent(new Event('change'));
  }
}

/** Drives a <meter> (0..1) from a microphone track with an AnalyserNode. */
export class MicLevel {
  #meter;
  #ctx = null;
  #source = null;
  #analyser = null;
  #buf = null;
  #frame = 0;
  #value = 0;
  #track = null;

  constructor(meter) {
    this.#meter = meter;
  }

  attach(track) {
    if (track === this.#track) return;
    this.#disconnect();
    this.#track = track;
    if (!track) {
      this.#render(0);
      return;
    }
    const AudioCtx = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!AudioCtx) return;
    if (!this.#ctx) this.#ctx = new AudioCtx();
    this.resume();
    this.#source = this.#ctx.createMediaStreamSource(new MediaStream([track]));
    this.#analyser = this.#ctx.createAnalyser();
    this.#analyser.fftSize = 1024;
    this.#buf = new Float32Array(this.#analyser.fftSize);
    this.#source.connect(this.#analyser);
    this.#loop();
  }

  /** Browsers start an AudioContext suspended until the user interacts. */
  resume() {
    if (this.#ctx && this.#ctx.state === 'suspended') this.#ctx.resume().catch(() => {});
  }

  #loop() {
    cancelAnimationFrame(this.#frame);
    const tick = () => {
      if (!this.#analyser) return;
      this.#analyser.getFloatTimeDomainData(this.#buf);
      let sum = 0;
      for (const x of this.#buf) sum += x * x;
      const rms = Math.sqrt(sum / this.#buf.length);
      // Map -60..0 dBFS onto 0..1: speech lands in the middle, silence at 0.
      const db = rms > 0 ? 20 * Math.log10(rms) : -100;
      const level = Math.min(1, Math.max(0, (db + 60) / 60));
      // Rise fast, fall slowly, so the bar is readable.
      this.#value = Math.max(level, this.#value * 0.9);
      this.#render(this.#value);
      this.#frame = requestAnimationFrame(tick);
    };
    this.#frame = requestAnimationFrame(tick);
  }

  #render(v) {
    if (this.#meter) this.#meter.value = Math.round(v * 100) / 100;
  }

  #disconnect() {
    cancelAnimationFrame(this.#frame);
    if (this.#source) this.#source.disconnect();
    this.#source = null;
    this.#analyser = null;
    this.#track = null;
  }

  stop() {
    this.#disconnect();
    this.#render(0);
    if (this.#ctx) this.#ctx.close().catch(() => {});
    this.#ctx = null;
  }
}

/**
 * A kind, plain explanation of why a device could not start.
 * `kind` is 'audio', 'video' or 'both'.
 * Returns { title, text, canRetry } or null when there is no error.
 */
export function explainMediaError(kind, err) {
  if (!err) return null;
  const device = { audio: 'microphone', video: 'camera', both: 'camera and microphone' }[kind];
  const is = kind === 'both' ? 'are' : 'is';
  switch (err.name) {
    case 'InsecureContextError':
      return {
        title: 'Camera and microphone need a secure connection',
        text: 'Your browser only allows the camera and microphone on pages opened with https://. '
          + 'Please ask your clinic for a secure link.',
        canRetry: false,
      };
    case 'NotAllowedError':
    case 'SecurityError':
      return {
        title: `Your browser is blocking the ${device}`,
        text: 'To allow it, select the camera or lock icon next to the web address at the top of the window, '
          + 'set Camera and Microphone to “Allow”, then select “Try again”. '
          + 'On an iPhone or iPad, open Settings, then Safari, and allow Camera and Microphone.',
        canRetry: true,
      };
    case 'NotFoundError':
    case 'OverconstrainedError':
      if (kind === 'video') {
        return {
          title: 'No camera found',
          text: 'We couldn’t find a camera. You can still join with audio only, '
            + 'or connect a camera and select “Try again”.',
          canRetry: true,
        };
      }
      if (kind === 'audio') {
        return {
          title: 'No microphone found',
          text: 'We couldn’t find a microphone. Connect a headset or microphone and select “Try again”. '
            + 'You can also join without one, but the other side will not hear you.',
          canRetry: true,
        };
      }
      return {
        title: 'No camera or microphone found',
        text: 'We couldn’t find a camera or a microphone. Connect a headset or webcam and select “Try again”. '
          + 'You can also join without them, but the other side will not see or hear you.',
        canRetry: true,
      };
    case 'NotReadableError':
    case 'AbortError':
      return {
        title: `Your ${device} ${is} busy`,
        text: `Another app may be using your ${device} (for example another video call). `
          + 'Close that app, then select “Try again”.',
        canRetry: true,
      };
    default:
      return {
        title: `Your ${device} could not start`,
        text: `Something went wrong (${err.name || 'unknown error'}). Select “Try again”, or reload the page.`,
        canRetry: true,
      };
  }
}
