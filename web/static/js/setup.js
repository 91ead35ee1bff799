// First provider account, with the one-time token from the URL fragment.

import { api } from './api.js';
import { $, tokenFromHash } from './dom.js';

const MIN_PASSWORD = 12;

const form = $('#setup-form');
const name = $('#name');
const email = $('#email');
const password = $('#password');
const confirm = $('#confirm');
const button = $('#setup-btn');
const error = $('#error');
const token = tokenFromHash();

function fail(message, field) {
  error.textContent = message;
  for (const input of [name, email, password, confirm]) {
    input.setAttribute('aria-invalid', String(input === field));
  }
  if (field) field.focus();
}

if (!token) {
  $('#setup-no-token').hidden = false;
  button.disabled = true;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.textContent = '';
  if (!token) return fail('This setup link is incomplete. Open the full link that the server printed.');
  const n = name.value.trim();
  const e = email.value.trim();
  if (!n) return fail('Please enter your name.', name);
  if (!e || !e.includes('@')) return fail('Please enter a valid email address.', email);
  if ([...password.value].length < MIN_PASSWORD) {
    return fail(`Your password needs at least ${MIN_PASSWORD} characters.`, password);
  }
  if (password.value !== confirm.value) return fail('The two passwords don’t match.', confirm);
  fail('', null);

  button.disabled = true;
  button.textContent = 'Creating account…';
  try {
    await api('POST', '/api/v1/setup', { token, email: e, name: n, password: password.value });
    location.assign('/');
  } catch (err) {
    button.disabled = false;
    button.textContent = 'Create account';
    fail(err.message);
  }
});

(async () => {
  try {
    const setup = await api('GET', '/api/v1/setup');
    if (setup && setup.needed === false) {
      $('#setup-done').hidden = false;
      form.hidden = true;
    }
  } catch { /* the form still works; the server has the final word */ }
})();
