// Provider dashboard: list, create and end consultations; copy patient links; invite more people; patients.

import { api } from './api.js';
import { account, toSignIn } from './account.js';
import { $, h, copyText, formatDate } from './dom.js';
import { InviteDialog } from './invite.js';

const STATUS_LABEL = { open: 'Open', ended: 'Ended', expired: 'Expired' };

const el = {
  error: $('#error'),
  meName: $('#me-name'),
  signout: $('#signout-btn'),
  form: $('#new-form'),
  title: $('#new-title'),
  expires: $('#new-expires'),
  create: $('#create-btn'),
  created: $('#created'),
  createdLink: $('#created-link'),
  createdCopy: $('#created-copy'),
  createdCopyStatus: $('#created-copy-status'),
  createdStart: $('#created-start'),
  list: $('#consultations'),
  empty: $('#list-empty'),
  refresh: $('#refresh-btn'),
  formRow: $('#new-form .form-row'),
  patientField: $('#new-patient-field'),
  patientSelect: $('#new-patient'),
  patientsSection: $('#patients-section'),
  patients: $('#patients'),
  patientsEmpty: $('#patients-empty'),
  patientForm: $('#patient-form'),
  patientName: $('#add-patient-name'),
  patientBirth: $('#add-patient-birth'),
  patientAdd: $('#add-patient-btn'),
  patientError: $('#add-patient-error'),
  patientStatus: $('#add-patient-status'),
};

/** @type {Map<string, object>} the provider's patients by id */
let patientsById = new Map();

function showError(err) {
  el.error.textContent = err ? err.message || String(err) : '';
}



async function loadList() {
  el.list.setAttribute('aria-busy', 'true');
  try {
    const data = await api('GET', '/api/v1/consultations');
    renderList((data && data.consultations) || []);
  } catch (err) {
    if (!toSignIn(err)) showError(err);
  } finally {
    el.list.setAttribute('aria-busy', 'false');
  }
}

function renderList(items) {
  el.empty.hidden = items.length > 0;
  el.list.replaceChildren(...items.map(renderItem));
}

function renderItem(c) {
  const open = c.status === 'open';
  const title = c.title || 'Untitled consultation';
  const fallback = h('div', { class: 'copy-fallback', hidden: true },
    h('label', { text: 'Patient link (select and copy it)' },
      h('input', { type: 'text', readonly: true, value: c.join_url || '' })));
  const copyStatus = h('p', { class: 'copy-status', role: 'status' });

  const actions = h('div', { class: 'consultation-actions' });
  if (open) {
    actions.append(
      h('a', { class: 'btn btn-primary', href: c.start_url, text: 'Start', 'aria-label': `Start ${title}` }),
      h('button', {
        type: 'button',
        class: 'btn',
        text: 'Copy patient link',
        dataset: { copy: c.join_url || '' },
        'aria-label': `Copy patient link for ${title}`,
        onClick: () => copyLink(c.join_url, copyStatus, fallback),
      }),
      h('button', {
        type: 'button',
        class: 'btn',
        text: 'Invite',
        dataset: { invite: c.id },
        'aria-label': `Invite someone to ${title}`,
        onClick: () => inviteDialog(c.id, title).open(),
      }),
      h('button', {
        type: 'button',
        class: 'btn btn-quiet',
        text: 'End',
        'aria-label': `End ${title}`,
        onClick: (e) => endConsultation(c, e.currentTarget),
      }),
    );
  }

  const meta = [`Created ${formatDate(c.created_at)}`];
  if (c.expires_at) meta.push(`${open ? 'Link works until' : 'Link expired'} ${formatDate(c.expires_at)}`);
  const patient = c.patient_id ? patientsById.get(c.patient_id) : null;

  return h('li', { class: `consultation${open ? '' : ' is-closed'}`, dataset: { id: c.id } },
    h('div', { class: 'consultation-main' },
      h('h3', { class: 'consultation-title' },
        h('span', { class: 'consultation-title-text', text: title }),
        h('span', { class: `badge badge-${c.status}`, text: STATUS_LABEL[c.status] || c.status })),
      h('p', { class: 'consultation-meta', text: meta.join(' · ') }),
      c.patient_id ? h('p', { class: 'consultation-patient' }, 'Patient: ',
        h('a', { href: `/patients/${encodeURIComponent(c.patient_id)}`, text: patient ? patient.name || 'Unnamed patient' : 'patient record' })) : null),
    actions,
    fallback,
    copyStatus);
}

const inviteDialogs = new Map();

// One dialog per consultation, made when first needed.
function inviteDialog(id, title) {
  let d = inviteDialogs.get(id);
  if (!d) {
    d = new InviteDialog({ consultationId: id, title });
    inviteDialogs.set(id, d);
  }
  return d;
}

// Clipboard access needs https (or localhost); otherwise show the link to copy by hand.
async function copyLink(url, statusEl, fallbackEl) {
  if (await copyText(url)) {
    statusEl.textContent = 'Patient link copied. Paste it into a message to your patient.';
    if (fallbackEl) fallbackEl.hidden = true;
    return;
  }
  statusEl.textContent = 'Your browser didn’t allow copying. Select the link below and copy it.';
  if (fallbackEl) {
    fallbackEl.hidden = false;
    const input = fallbackEl.querySelector('input');
    input.focus();
    input.select();
  }
}

async function endConsultation(c, button) {
  button.disabled = true;
  try {
    await api('POST', `/api/v1/consultations/${encodeURIComponent(c.id)}/end`, {});
    await loadList();
  } catch (err) {
    button.disabled = false;
    if (!toSignIn(err)) showError(err);
  }
}

el.form.addEventListener('submit', async (event) => {
  event.preventDefault();
  showError(null);
  const body = { expires_in: el.expires.value };
  const title = el.title.value.trim();
  if (title) body.title = title;
  if (el.patientSelect.value) body.patient_id = el.patientSelect.value;
  el.create.disabled = true;
  try {
    const c = await api('POST', '/api/v1/consultations', body);
    el.createdLink.value = c.join_url || '';
    el.createdStart.href = c.start_url || '/';
    el.createdCopyStatus.textContent = '';
    el.created.hidden = false;
    el.title.value = '';
    el.created.focus();
    el.createdLink.select();
    await loadList();
  } catch (err) {
    if (!toSignIn(err)) showError(err);
  } finally {
    el.create.disabled = false;
  }
});

el.createdCopy.addEventListener('click', async () => {
  if (await copyText(el.createdLink.value)) {
    el.createdCopyStatus.textContent = 'Patient link copied. Paste it into a message to your patient.';
  } else {
    el.createdCopyStatus.textContent = 'Your browser didn’t allow copying. The link is selected: copy it with Ctrl+C (⌘C on a Mac).';
    el.createdLink.focus();
    el.createdLink.select();
  }
});

el.refresh.addEventListener('click', () => loadList());

// ---------- patients ----------

async function loadPatients() {
  el.patients.setAttribute('aria-busy', 'true');
  try {
    const data = await api('GET', '/api/v1/patients');
    renderPatients((data && data.patients) || []);
  } catch (err) {
    if (toSignIn(err)) return;
    // A server without remote monitoring has no patients: leave them out rather than fail.
    if (err.status === 404) {
      el.patientsSection.hidden = true;
      return;
    }
    showError(err);
  } finally {
    el.patients.setAttribute('aria-busy', 'false');
  }
}

const birthFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' });

function formatBirthDate(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value || '');
  if (!m) return '';
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return Number.isNaN(d.getTime()) ? '' : birthFormat.format(d);
}

function renderPatients(patients) {
  patientsById = new Map(patients.map((p) => [p.id, p]));
  const sorted = [...patients].sort((a, b) => String(a.name || '').localeCompare(String(b.name || '')));
  el.patientsEmpty.hidden = patients.length > 0;
  el.patients.replaceChildren(...sorted.map((p) => {
    const born = formatBirthDate(p.birth_date);
    return h('li', { class: 'patient', dataset: { id: p.id } },
      h('a', { class: 'patient-link', href: `/patients/${encodeURIComponent(p.id)}`, text: p.name || 'Unnamed patient' }),
      h('span', { class: 'patient-meta', text: born ? `Born ${born}` : '' }));
  }));

  // The New consultation form's choice of patient, keeping what was chosen.
  const chosen = el.patientSelect.value;
  el.patientSelect.replaceChildren(
    h('option', { value: '', text: 'No patient' }),
    ...sorted.map((p) => h('option', { value: p.id, text: p.name || 'Unnamed patient' })),
  );
  if (chosen && patientsById.has(chosen)) el.patientSelect.value = chosen;
  el.patientField.hidden = patients.length === 0;
  el.formRow.classList.toggle('has-patients', patients.length > 0);
}

function patientProblem(name, birth) {
  if (!name) return [el.patientName, 'Enter the patient’s name.'];
  if ([...name].length > 120) return [el.patientName, 'Use 120 characters or fewer for the name.'];
  if (birth) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(birth) || !formatBirthDate(birth)) return [el.patientBirth, 'Enter the birth date as a date, or leave it empty.'];
    const today = new Date().toISOString().slice(0, 10);
    if (birth > today) return [el.patientBirth, 'The birth date can’t be in the future.'];
  }
  return null;
}

el.patientForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  showError(null);
  el.patientStatus.textContent = '';
  const name = el.patientName.value.trim();
  const birth = el.patientBirth.value;
  const problem = patientProblem(name, birth);
  for (const input of [el.patientName, el.patientBirth]) {
    input.setAttribute('aria-invalid', String(Boolean(problem) && problem[0] === input));
  }
  el.patientError.textContent = problem ? problem[1] : '';
  el.patientError.hidden = !problem;
  if (problem) {
    problem[0].focus();
    return;
  }
  const body = { name };
  if (birth) body.birth_date = birth;
  el.patientAdd.disabled = true;
  try {
    const p = await api('POST', '/api/v1/patients', body);
    el.patientName.value = '';
    el.patientBirth.value = '';
    el.patientStatus.replaceChildren(`Added ${p.name || name}. `,
      h('a', { href: `/patients/${encodeURIComponent(p.id)}`, text: 'Open their page to enroll a device' }));
    await loadPatients();
  } catch (err) {
    if (toSignIn(err)) return;
    el.patientError.textContent = err.message;
    el.patientError.hidden = false;
  } finally {
    el.patientAdd.disabled = false;
  }
});


// Statuses change as links expire and calls end; refresh when the provider comes back.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') loadList();
});

(async () => {
  if (!(await account(el.meName, el.signout, showError))) return;
  // Patients first: the consultation list names them.
  await loadPatients();
  await loadList();
})();
