// Inviting one more person into a consultation: an interpreter, a family member or caregiver
// (role guest), or another clinician who may admit and remove people (docs/api.md#invitations).
// The call page and the dashboard both use it.

import { api } from './api.js';
import { h, copyText, formatDate } from './dom.js';

const NAME_MAX = 80;

/** The roles one can invite, as a provider reads them. */
export const INVITE_ROLES = [
  { value: 'guest', label: 'Interpreter, family member or caregiver' },
  { value: 'clinician', label: 'Another clinician, who may admit and remove people' },
];

const ROLE_WORDS = {
  provider: 'Provider',
  patient: 'Patient',
  guest: 'Guest',
  clinician: 'Clinician',
  device: 'Device',
};

/** A role in a word, for tiles, the waiting room and lists. */
export function roleWord(role) {
  return ROLE_WORDS[role] || 'Guest';
}

let dialogCount = 0;

/**
 * A dialog that creates invitation links, lists the consultation's invitations and revokes them.
 * `headers` authenticates the API calls (the call page passes the provider link as a Bearer token;
 * the dashboard relies on the session cookie).
 */
export class InviteDialog {
  #consultationId;
  #headers;
  #el = {};
  #busy = false;

  /**
   * @param {object} o
   * @param {string} o.consultationId
   * @param {Record<string,string>} [o.headers]
   * @param {string} [o.title] what the dialog's heading names, such as the consultation's title
   */
  constructor({ consultationId, headers = {}, title = '' }) {
    this.#consultationId = consultationId;
    this.#headers = headers;
    this.#build(title);
  }

  /** Open the dialog and load the list of invitations. */
  open() {
    const d = this.#el.dialog;
    if (!d.open) d.showModal();
    this.#el.result.hidden = true;
    this.#el.error.hidden = true;
    this.#el.name.focus();
    this.#load();
  }

  /** The dialog element, for tests and styling. */
  get element() { return this.#el.dialog; }

  #path(suffix = '') {
    return `/api/v1/consultations/${encodeURIComponent(this.#consultationId)}/invitations${suffix}`;
  }

  #build(title) {
    dialogCount += 1;
    const id = `invite-${dialogCount}`;
    const el = this.#el;
    el.name = h('input', {
      id: `${id}-name`, type: 'text', maxlength: String(NAME_MAX), autocomplete: 'off', required: true,
      'aria-describedby': `${id}-error`,
    });
    el.error = h('p', { id: `${id}-error`, class: 'field-error', role: 'alert', hidden: true });
    el.submit = h('button', { type: 'submit', class: 'btn btn-primary', text: 'Create link' });
    const radios = INVITE_ROLES.map((r, i) => h('label', { class: 'radio' },
      h('input', { type: 'radio', name: `${id}-role`, value: r.value, checked: i === 0 }),
      ` ${r.label}`));
    el.form = h('form', { class: 'invite-form', novalidate: true },
      h('fieldset', { class: 'invite-roles' }, h('legend', { text: 'Invite as' }), ...radios),
      h('div', { class: 'field' }, h('label', { for: `${id}-name`, text: 'Their name' }), el.name,
        h('p', { class: 'hint', text: 'Everyone in the call sees this name.' }), el.error),
      h('div', { class: 'actions' }, el.submit));
    el.form.addEventListener('submit', (e) => { e.preventDefault(); this.#create(); });

    el.link = h('input', { type: 'text', readonly: true, class: 'invite-link', 'aria-label': 'Invitation link' });
    el.linkLabel = h('p', { class: 'invite-link-label' });
    el.copyStatus = h('p', { class: 'copy-status', role: 'status' });
    el.copy = h('button', { type: 'button', class: 'btn', text: 'Copy link', onClick: () => this.#copy() });
    el.result = h('div', { class: 'invite-result', hidden: true }, el.linkLabel, el.link, el.copy, el.copyStatus);

    el.list = h('ul', { class: 'invite-list' });
    el.listStatus = h('p', { class: 'hint', role: 'status' });
    el.close = h('button', { type: 'button', class: 'btn btn-quiet', text: 'Close', onClick: () => el.dialog.close() });
    el.dialog = h('dialog', { class: 'invite-dialog', 'aria-labelledby': `${id}-heading` },
      h('h2', { id: `${id}-heading`, text: title ? `Invite someone to ${title}` : 'Invite someone' }),
      h('p', { class: 'hint', text: 'The link works for this consultation only, for this person, until the consultation ends. They wait in the waiting room until you let them in.' }),
      el.form, el.result,
      h('h3', { text: 'Invited' }), el.listStatus, el.list,
      h('div', { class: 'actions' }, el.close));
    document.body.append(el.dialog);
  }

  async #create() {
    if (this.#busy) return;
    const el = this.#el;
    const name = el.name.value.trim();
    const role = (el.form.querySelector('input[type=radio]:checked') || {}).value || 'guest';
    let problem = '';
    if (!name) problem = 'Please enter the name of the person you are inviting.';
    else if ([...name].length > NAME_MAX) problem = `Please use ${NAME_MAX} characters or fewer.`;
    el.error.textContent = problem;
    el.error.hidden = !problem;
    el.name.setAttribute('aria-invalid', problem ? 'true' : 'false');
    if (problem) { el.name.focus(); return; }

    this.#busy = true;
    el.submit.disabled = true;
    el.submit.textContent = 'Creating…';
    try {
      const inv = await api('POST', this.#path(), { role, name }, { headers: this.#headers });
      el.link.value = inv.join_url || '';
      el.linkLabel.textContent = `Link for ${inv.name} (${roleWord(inv.role).toLowerCase()}), works until ${formatDate(inv.expires_at)}:`;
      el.result.hidden = false;
      el.result.dataset.id = inv.id;
      el.copyStatus.textContent = '';
      el.name.value = '';
      el.link.focus();
      el.link.select();
      this.#load();
    } catch (err) {
      el.error.textContent = (err && err.message) || 'The invitation could not be created.';
      el.error.hidden = false;
    } finally {
      this.#busy = false;
      el.submit.disabled = false;
      el.submit.textContent = 'Create link';
    }
  }

  async #copy() {
    const el = this.#el;
    if (await copyText(el.link.value)) {
      el.copyStatus.textContent = 'Link copied. Send it to them in a message.';
      return;
    }
    el.copyStatus.textContent = 'Your browser didn’t allow copying. Select the link and copy it.';
    el.link.focus();
    el.link.select();
  }

  async #load() {
    const el = this.#el;
    el.listStatus.textContent = 'Loading…';
    try {
      const res = await api('GET', this.#path(), undefined, { headers: this.#headers });
      const list = (res && Array.isArray(res.invitations)) ? res.invitations : [];
      el.listStatus.textContent = list.length ? '' : 'No one invited yet.';
      el.list.replaceChildren(...list.map((inv) => this.#item(inv)));
    } catch (err) {
      el.listStatus.textContent = (err && err.message) || 'The invitations could not be loaded.';
    }
  }

  #item(inv) {
    const revoked = Boolean(inv.revoked_at);
    const what = revoked ? `link stopped ${formatDate(inv.revoked_at)}` : `until ${formatDate(inv.expires_at)}`;
    const li = h('li', { class: `invite-item${revoked ? ' is-revoked' : ''}`, dataset: { id: inv.id } },
      h('span', { class: 'invite-who', text: `${inv.name} · ${roleWord(inv.role)}` }),
      h('span', { class: 'invite-when', text: what }));
    if (!revoked) {
      li.append(h('button', {
        type: 'button', class: 'btn btn-quiet btn-small', text: 'Revoke',
        'aria-label': `Revoke the link of ${inv.name}`,
        onClick: (e) => this.#revoke(inv, e.currentTarget),
      }));
    }
    return li;
  }

  async #revoke(inv, button) {
    button.disabled = true;
    try {
      await api('DELETE', this.#path(`/${encodeURIComponent(inv.id)}`), undefined, { headers: this.#headers });
      this.#load();
    } catch (err) {
      button.disabled = false;
      this.#el.listStatus.textContent = (err && err.message) || 'The link could not be revoked.';
    }
  }
}
