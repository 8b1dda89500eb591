// The REST API at /api/v1: the session token lives in sessionStorage.
const TOKEN_KEY = "qiantang.token";
const BASE = "/api/v1";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || body?.title || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  } else {
    sessionStorage.removeItem(TOKEN_KEY);
  }
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") {
      query.set(k, String(v));
    }
  }
  const text = query.toString();
  return `${BASE}${path}${text ? `?${text}` : ""}`;
}

async function request(method, path, { params, body } = {}) {
  const headers = { Accept: "application/json" };
  const bearer = token();
  if (bearer) {
    headers.Authorization = `Bearer ${bearer}`;
  }
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url(path, params), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) {
      setToken(null);
      window.dispatchEvent(new CustomEvent("qiantang:signed-out"));
    }
    throw new ApiError(response.status, data);
  }
  return data;
}

export const api = {
  get: (path, params) => request("GET", path, { params }),
  post: (path, body, params) => request("POST", path, { body, params }),
  patch: (path, body) => request("PATCH", path, { body }),
  put: (path, body) => request("PUT", path, { body }),
  del: (path) => request("DELETE", path),
  // Every item of a paged list (PageOut: items, total, limit, offset).
  async all(path, params = {}, cap = 5000) {
    const items = [];
    for (let offset = 0; offset < cap; offset += 500) {
      const page = await request("GET", path, { params: { ...params, limit: 500, offset } });
      items.push(...page.items);
      if (items.length >= page.total || page.items.length === 0) {
        break;
      }
    }
    return items;
  },
};
