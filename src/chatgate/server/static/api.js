// Every call to chatgate goes through here: the admin key as a bearer token, a 401
// answered by asking for the key, and the three error shapes read into one ApiError.
import { askForKey, forgetKey, storedKey } from './auth.js';

/** A refused call: the server's message, and the field it names (`param`). */
export class ApiError extends Error {
  constructor(status, message, param = null, code = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.param = param;
    this.code = code;
  }
}

/** The error in *body*: OpenAI's {error: {...}}, Anthropic's {type: "error", error},
 * or FastAPI's {detail} (the SGP door). */
export function errorFrom(status, body) {
  if (body && typeof body === 'object') {
    const inner = body.error;
    if (inner && typeof inner === 'object') {
      return new ApiError(status, String(inner.message || `HTTP ${status}`),
        inner.param ?? null, inner.code ?? inner.type ?? null);
    }
    if (typeof inner === 'string') return new ApiError(status, inner);
    if (typeof body.detail === 'string') return new ApiError(status, body.detail);
    if (Array.isArray(body.detail)) {
      const first = body.detail[0] || {};
      const loc = Array.isArray(first.loc) ? first.loc.filter((p) => p !== 'body').join('.') : null;
      return new ApiError(status, String(first.msg || `HTTP ${status}`), loc || null);
    }
  }
  return new ApiError(status, `HTTP ${status}`);
}

async function toError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: the status says enough
  }
  return errorFrom(response.status, body);
}

/** Call *path*; the parsed JSON answer (null for 204), or the Response itself with
 * `raw` (a stream). A 401 asks for the admin key and tries again. */
export async function api(path, {method = 'GET', body, signal, raw = false, headers: extra} = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = {
      Accept: raw ? 'text/event-stream, application/json' : 'application/json', ...extra,
    };
    const key = storedKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    // Every POST under /api/ must say JSON, even one without a body (the edge's 415).
    const sending = body !== undefined || ['POST', 'PUT', 'PATCH'].includes(method);
    if (sending) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      body: sending ? JSON.stringify(body ?? {}) : undefined,
      signal,
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
    if (response.status === 401 && attempt < 3) {
      const error = await toError(response);
      forgetKey();
      await askForKey(attempt === 0 ? '' : `That key was refused (${error.message}).`);
      continue;
    }
    if (response.status === 403 && attempt < 3) {
      // A gateway key that is not an admin key: ask for one that is.
      const error = await toError(response);
      if (error.code !== 'admin_key_required') throw error;
      forgetKey();
      await askForKey(`${error.message}.`);
      continue;
    }
    if (!response.ok) throw await toError(response);
    if (raw) return response;
    if (response.status === 204) return null;
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }
}

/** A path segment: connection names and key labels go into URLs escaped. */
export function seg(value) {
  return encodeURIComponent(value);
}
