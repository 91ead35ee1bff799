// The signed-in provider's corner of the provider pages: who is signed in, signing out, and where a
// signed-out provider belongs.
import { api } from './api.js';

/** Sends a signed-out provider (a 401) to the sign-in page. Returns true if it did. */
export function toSignIn(err) {
  if (err && err.status === 401) {
    location.assign('/login');
    return true;
  }
  return false;
}

/**
 * Shows the provider's name in nameEl and makes signoutBtn sign out. Resolves true once the provider
 * is known; false if not, after going to the sign-in page or handing the error to onError.
 */
export async function account(nameEl, signoutBtn, onError) {
  signoutBtn.addEventListener('click', async () => {
    signoutBtn.disabled = true;
    try {
      await api('DELETE', '/api/v1/session');
    } catch { /* signed out or not, the sign-in page is where to go */ }
    location.assign('/login');
  });
  try {
    const me = await api('GET', '/api/v1/me');
    nameEl.textContent = me.name || me.email || '';
    return true;
  } catch (err) {
    if (!toSignIn(err)) onError(err);
    return false;
  }
}
