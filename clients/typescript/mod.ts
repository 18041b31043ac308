/**
 * Siesta's TypeScript client: OpenAI-compatible chat and text completions as Web Streams of
 * text, for Deno, Node >= 20 and browsers (fetch, TextDecoderStream, AbortSignal; nothing else).
 *
 * ```ts
 * import { Client, text } from "./mod.ts";
 * const siesta = new Client({ baseURL: "http://127.0.0.1:8080/v1" });
 * const answer = await siesta.chat({ model: "tiny-chat", messages: [{ role: "user", content: "Hi" }] });
 * console.log(await text(answer));
 * ```
 */

export { type CallOptions, Client, type ClientOptions, type Served, text } from "./src/client.ts";
export {
  APIError,
  AuthenticationError,
  BadRequestError,
  NotFoundError,
  ServerError,
  UnavailableError,
} from "./src/errors.ts";
export { type SSEMessage, SSEParser } from "./src/sse.ts";
export type {
  ChatMessage,
  ChatRequest,
  CompletionRequest,
  ErrorBody,
  Model,
  ResponseFormat,
  SamplingFields,
} from "./src/types.ts";
