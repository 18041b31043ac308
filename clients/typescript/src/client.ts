/**
 * The client: POST a streaming request, retry a 503 after its Retry-After while the caller's
 * deadline allows, and turn the SSE answer into a ReadableStream of text.
 */

import {
  APIError,
  apiError,
  errorBody,
  retryAfterSeconds,
  ServerError,
  UnavailableError,
} from "./errors.ts";
import { type SSEMessage, SSEParser } from "./sse.ts";
import type { ChatRequest, CompletionRequest, Model } from "./types.ts";

export interface ClientOptions {
  /** The API's base URL including `/v1`: the gateway's, or one siesta-server's. */
  baseURL: string;
  /** Sent as `Authorization: Bearer KEY` (the gateway's API keys). */
  apiKey?: string;
  /** Another fetch (a proxy-aware one, say); the platform's by default. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  /** Cancels the request, the retries and the stream; the stream errors with its reason. */
  signal?: AbortSignal;
  /**
   * The caller's deadline in milliseconds for the whole call: waiting for a waking model,
   * retries and the stream. Past it everything stops with a `TimeoutError` DOMException.
   * A 503 is retried after its `Retry-After` only when that still fits before the deadline;
   * without `timeoutMs` a 503 is thrown at once.
   */
  timeoutMs?: number;
  /** Each SSE comment, e.g. the gateway's `waiting for model` every few seconds of a wake-up. */
  onKeepAlive?: (comment: string) => void;
  /**
   * Once, before the first text: who answered through the gateway (`gpu`, or `bridge` for a
   * model's CPU bridge while its GPU wakes) and how long the request waited for a wake.
   * Not called for a server that does not say (a bare siesta-server).
   */
  onServed?: (served: Served) => void;
  /** Before each retry of a 503: the error and the seconds about to be waited. */
  onRetry?: (error: UnavailableError, delaySeconds: number) => void;
}

/** Who answered a request, as the gateway says in headers (or SSE comments, when held). */
export interface Served {
  /** `gpu` or `bridge`. */
  by: string;
  /** Seconds the request waited for its model to wake; null when it did not wait. */
  wakeSeconds: number | null;
}

// The gateway's words, as headers or (for a held stream, whose headers went out) comments.
const SERVED_BY = "X-Siesta-Served-By";
const WAKE_SECONDS = "X-Siesta-Wake-Seconds";

/** Collects the gateway's served-by words from headers and comments; tells once. */
class ServedBy {
  #by: string | null;
  #wake: number | null;
  #told = false;
  readonly #listener: ((served: Served) => void) | undefined;

  constructor(headers: Headers, listener: ((served: Served) => void) | undefined) {
    this.#by = headers.get(SERVED_BY);
    this.#wake = seconds(headers.get(WAKE_SECONDS));
    this.#listener = listener;
  }

  /** Takes a comment that carries one of the words; false for any other comment. */
  took(comment: string): boolean {
    const colon = comment.indexOf(":");
    if (colon < 0) return false;
    const name = comment.slice(0, colon).trim().toLowerCase();
    const value = comment.slice(colon + 1).trim();
    if (name === SERVED_BY.toLowerCase()) this.#by = value;
    else if (name === WAKE_SECONDS.toLowerCase()) this.#wake = seconds(value);
    else return false;
    return true;
  }

  tell(): void {
    if (this.#told || this.#by === null) return;
    this.#told = true;
    this.#listener?.({ by: this.#by, wakeSeconds: this.#wake });
  }
}

function seconds(value: string | null): number | null {
  const parsed = value === null ? NaN : Number(value);
  return Number.isFinite(parsed) ? parsed : null;
}

type Chunk = { choices?: { index?: number; text?: string; delta?: { content?: string | null } }[] };

export class Client {
  readonly #base: string;
  readonly #apiKey: string | undefined;
  readonly #fetch: typeof fetch;

  constructor(options: ClientOptions) {
    this.#base = options.baseURL.replace(/\/+$/, "");
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** Streams the assistant's text of a chat completion. */
  chat(request: ChatRequest, options: CallOptions = {}): Promise<ReadableStream<string>> {
    return this.#stream("/chat/completions", request, options, (c) => c.delta?.content ?? "");
  }

  /** Streams the text of a (non-chat) completion. */
  complete(request: CompletionRequest, options: CallOptions = {}): Promise<ReadableStream<string>> {
    return this.#stream("/completions", request, options, (c) => c.text ?? "");
  }

  /** `GET /models`: every model by name (through the gateway: with its `siesta` state). */
  async models(options: Pick<CallOptions, "signal"> = {}): Promise<Model[]> {
    const response = await this.#fetch(`${this.#base}/models`, {
      headers: this.#headers(),
      signal: options.signal ?? null,
    });
    if (!response.ok) throw await errorOf(response);
    return ((await response.json()) as { data: Model[] }).data;
  }

  async #stream(
    path: string,
    request: ChatRequest | CompletionRequest,
    options: CallOptions,
    text: (choice: NonNullable<Chunk["choices"]>[number]) => string,
  ): Promise<ReadableStream<string>> {
    const call = new Call(options);
    try {
      const response = await this.#post(path, { ...request, stream: true }, call, options);
      const type = response.headers.get("Content-Type") ?? "";
      if (!type.startsWith("text/event-stream") || response.body === null) {
        throw apiError(response.status, await response.json().catch(() => null));
      }
      const events = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(
        new SSEParser(),
      );
      const served = new ServedBy(response.headers, options.onServed);
      return textOf(events.getReader(), text, call, options.onKeepAlive, served);
    } catch (error) {
      call.end();
      throw error;
    }
  }

  async #post(path: string, body: unknown, call: Call, options: CallOptions): Promise<Response> {
    for (;;) {
      const response = await this.#fetch(`${this.#base}${path}`, {
        method: "POST",
        headers: {
          ...this.#headers(),
          "Content-Type": "application/json",
          Accept: "text/event-stream",
        },
        body: JSON.stringify(body),
        signal: call.signal,
      });
      if (response.ok) return response;
      const error = await errorOf(response);
      const delay = error.retryAfter;
      if (!(error instanceof UnavailableError) || delay === null || !call.fits(delay * 1000)) {
        throw error;
      }
      options.onRetry?.(error, delay);
      await call.sleep(delay * 1000);
    }
  }

  #headers(): Record<string, string> {
    return this.#apiKey === undefined ? {} : { Authorization: `Bearer ${this.#apiKey}` };
  }
}

/** Reads a whole text stream into one string. */
export async function text(stream: ReadableStream<string>): Promise<string> {
  const reader = stream.getReader(); // not `for await`: Safari's streams are not async-iterable
  let all = "";
  for (let read = await reader.read(); !read.done; read = await reader.read()) all += read.value;
  return all;
}

async function errorOf(response: Response): Promise<APIError> {
  const raw = await response.text();
  let body: unknown = null;
  try {
    body = JSON.parse(raw);
  } catch {
    body = { error: { message: raw || response.statusText, type: "api_error" } };
  }
  return apiError(
    response.status,
    body,
    retryAfterSeconds(response.headers.get("Retry-After"), Date.now()),
  );
}

/** The text deltas of an SSE answer; ends at `[DONE]`, errors on an error event or a cut stream. */
function textOf(
  events: ReadableStreamDefaultReader<SSEMessage>,
  pick: (choice: NonNullable<Chunk["choices"]>[number]) => string,
  call: Call,
  onKeepAlive: ((comment: string) => void) | undefined,
  served: ServedBy,
): ReadableStream<string> {
  return new ReadableStream<string>({
    start(out) {
      // Not left to fetch alone: an abort must stop a stream whose data keeps arriving.
      call.onAbort((reason) => {
        out.error(reason);
        events.cancel(reason).catch(() => {});
      });
    },
    async pull(out) {
      try {
        for (;;) {
          const { value, done } = await events.read();
          if (done) {
            throw new ServerError(0, {
              message: "the event stream ended before [DONE]: the answer is incomplete",
              type: "server_error",
              param: null,
              code: null,
            });
          }
          if (value.kind === "comment") {
            if (!served.took(value.text)) onKeepAlive?.(value.text);
            continue;
          }
          served.tell();
          if (value.data === "[DONE]") {
            call.end();
            out.close();
            await events.cancel();
            return;
          }
          const chunk: unknown = JSON.parse(value.data);
          if (errorBody(chunk) !== null) throw apiError(0, chunk);
          const first = (chunk as Chunk).choices?.find((choice) => (choice.index ?? 0) === 0);
          const piece = first === undefined ? "" : pick(first);
          if (piece !== "") {
            out.enqueue(piece);
            return;
          }
        }
      } catch (error) {
        call.end();
        await events.cancel().catch(() => {});
        throw error;
      }
    },
    async cancel(reason) {
      call.end();
      await events.cancel(reason);
    },
  });
}

/** One call's cancellation: the caller's signal and deadline as one AbortSignal. */
class Call {
  readonly #controller = new AbortController();
  readonly #listeners: (() => void)[] = [];
  readonly #deadline: number;
  readonly #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #caller: AbortSignal | undefined;
  readonly #onAbort = (): void => this.#controller.abort(this.#caller?.reason);

  constructor(options: CallOptions) {
    this.#caller = options.signal;
    const timeout = options.timeoutMs;
    this.#deadline = timeout === undefined ? Date.now() : Date.now() + timeout;
    if (timeout !== undefined) {
      const reason = new DOMException(`no complete answer within ${timeout} ms`, "TimeoutError");
      this.#timer = setTimeout(() => this.#controller.abort(reason), timeout);
    }
    if (this.#caller?.aborted) this.#onAbort();
    else this.#caller?.addEventListener("abort", this.#onAbort, { once: true });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Whether waiting `ms` more still ends before the deadline. */
  fits(ms: number): boolean {
    return Date.now() + ms < this.#deadline;
  }

  sleep(ms: number): Promise<void> {
    const signal = this.signal;
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const abort = (): void => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", abort);
        resolve();
      }, ms);
      signal.addEventListener("abort", abort, { once: true });
    });
  }

  /** Runs `listener` with the reason when the call is aborted (until it ends). */
  onAbort(listener: (reason: unknown) => void): void {
    const signal = this.signal;
    const run = (): void => listener(signal.reason);
    if (signal.aborted) return run();
    signal.addEventListener("abort", run, { once: true });
    this.#listeners.push(run);
  }

  /** Stops the deadline timer and forgets the caller's signal (the call is over). */
  end(): void {
    clearTimeout(this.#timer);
    this.#caller?.removeEventListener("abort", this.#onAbort);
    for (const run of this.#listeners.splice(0)) this.signal.removeEventListener("abort", run);
  }
}
