/** OpenAI-style errors as typed exceptions, from a status line or from an SSE `data:` event. */

import type { ErrorBody } from "./types.ts";

/** An error the API answered: `status` is the HTTP status (0 when sent inside a stream). */
export class APIError extends Error {
  override name = "APIError";
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
    /** Seconds the server asked to wait before retrying (`Retry-After`), if any. */
    readonly retryAfter: number | null = null,
  ) {
    super(body.message);
  }
  get type(): string {
    return this.body.type;
  }
  get code(): string | number | null {
    return this.body.code;
  }
  get param(): string | null {
    return this.body.param;
  }
}

/** 400: the request is malformed or a field is out of range (`param` names it). */
export class BadRequestError extends APIError {
  override name = "BadRequestError";
}
/** 401: API keys are on and the key is missing or wrong. */
export class AuthenticationError extends APIError {
  override name = "AuthenticationError";
}
/** 404: no model has that name (the message lists the known ones). */
export class NotFoundError extends APIError {
  override name = "NotFoundError";
}
/** 503: loading, waking past its wakeTimeout, queue full or restarting; see `retryAfter`. */
export class UnavailableError extends APIError {
  override name = "UnavailableError";
}
/** 5xx other than 503: the server or the model replica failed. */
export class ServerError extends APIError {
  override name = "ServerError";
}

const BY_STATUS: Record<number, typeof APIError> = {
  400: BadRequestError,
  401: AuthenticationError,
  404: NotFoundError,
  503: UnavailableError,
};

const BY_TYPE: Record<string, typeof APIError> = {
  invalid_request_error: BadRequestError,
  authentication_error: AuthenticationError,
  not_found_error: NotFoundError,
  unavailable_error: UnavailableError,
  server_error: ServerError,
};

/** The typed error for a body; `status` 0 means it arrived as an event of a started stream. */
export function apiError(
  status: number,
  body: unknown,
  retryAfter: number | null = null,
): APIError {
  const error = errorBody(body) ??
    { message: `HTTP ${status}`, type: "api_error", param: null, code: null };
  const kind = BY_STATUS[status] ?? BY_TYPE[error.type] ??
    (status >= 500 ? ServerError : APIError);
  return new kind(status, error, retryAfter);
}

/** The `error` object of an OpenAI-style body, or null when `body` is something else. */
export function errorBody(body: unknown): ErrorBody | null {
  if (typeof body !== "object" || body === null || !("error" in body)) return null;
  const error: unknown = body.error;
  if (typeof error !== "object" || error === null) return null;
  const field = (name: string): unknown => (error as Record<string, unknown>)[name];
  const code = field("code");
  const param = field("param");
  return {
    message: String(field("message") ?? "unknown error"),
    type: String(field("type") ?? "api_error"),
    param: typeof param === "string" ? param : null,
    code: typeof code === "string" || typeof code === "number" ? code : null,
  };
}

/** `Retry-After` in seconds (delta-seconds or an HTTP date), null when absent or invalid. */
export function retryAfterSeconds(header: string | null, now: number): number | null {
  if (header === null || header.trim() === "") return null;
  if (/^\s*\d+\s*$/.test(header)) return Number(header);
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, (date - now) / 1000);
}
