// Provider sign-in.

import { api } from './api.js';
import { $ } from './dom.js';

const form = $('#login-form');
const email = $('#email');
const password = $('#password');
const button = $('#login-btn');
const error = $('#error');

function fail(message, field) {
  error.textContent = message;
  if (field) field.focus();
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.textContent = '';
  if (!email.value.trim()) return fail('Please enter your email address.', email);
  if (!password.value) return fail('Please enter your password.', password);

  button.disabled = true;
  button.textContent = 'Signing in…';
  try {
    await api('POST', '/api/v1/session', { email: email.value.trim(), password: password.value });
    location.assign('/');
  } catch (err) {
    button.disabled = false;
    button.textContent = 'Sign in';
    password.value = '';
    fail(err.message, err.code === 'bad_credentials' ? password : null);
  }
});

// A hint for a fresh install; failure here must not get in the way of signing in.
(async () => {
  try {
    const setup = await api('GET', '/api/v1/setup');
    if (setup && setup.needed) $('#setup-note').hidden = false;
  } catch { /* ignore */ }
})();
