// JSON API client for the provider pages (docs/api.md).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/**
 * Call the API. Resolves with the parsed JSON body (null for 204), rejects
 * with ApiError carrying the server's person-readable message. `options.headers`
 * adds headers (an Authorization with a link token, say).
 */
export async function api(method, path, body, options = {}) {
  const init = {
    method,
    credentials: 'same-origin',
    // The server requires this header on state-changing requests (CSRF defence).
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...(options.headers || {}) },
  };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'Could not reach the server. Check your connection and try again.');
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch { /* not JSON */ }
  if (!res.ok) {
    const e = data && data.error;
    throw new ApiError(
      res.status,
      (e && e.code) || `http_${res.status}`,
      // The API's messages read as the tail of a sentence (the command line prefixes them);
      // on a page they start one.
      (e && e.message && e.message[0].toUpperCase() + e.message.slice(1))
        || `Something went wrong (HTTP ${res.status}). Please try again.`,
    );
  }
  return data;
}
