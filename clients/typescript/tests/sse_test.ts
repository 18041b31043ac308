// The SSE parser and the error mapping alone: fixed inputs, no I/O.
import assert from "node:assert/strict";
import { SSEMessage, SSEParser } from "../mod.ts";
import { apiError, retryAfterSeconds } from "../src/errors.ts";
import { AuthenticationError, BadRequestError, ServerError, UnavailableError } from "../mod.ts";

async function parse(chunks: string[]): Promise<SSEMessage[]> {
  const messages: SSEMessage[] = [];
  const stream = ReadableStream.from(chunks).pipeThrough(new SSEParser());
  for await (const message of stream) messages.push(message);
  return messages;
}

Deno.test("keep-alive comments come out as comments, data events as events", async () => {
  const messages = await parse([
    ": waiting for model\n\n",
    'data: {"a":1}\n\n',
    "data: [DONE]\n\n",
  ]);
  assert.deepEqual(messages, [
    { kind: "comment", text: "waiting for model" },
    { kind: "event", event: "message", data: '{"a":1}' },
    { kind: "event", event: "message", data: "[DONE]" },
  ]);
});

Deno.test("chunks split anywhere, CRLF and CR line ends, multi-line data", async () => {
  const text = "event: x\r\ndata: one\r\ndata:two\r\n\r\ndata: three\r\rdata: four\n\n";
  const whole = await parse([text]);
  for (let size = 1; size < 8; size++) {
    const pieces = text.match(new RegExp(`[^]{1,${size}}`, "g")) ?? [];
    assert.deepEqual(await parse(pieces), whole, `chunks of ${size}`);
  }
  assert.deepEqual(whole, [
    { kind: "event", event: "x", data: "one\ntwo" },
    { kind: "event", event: "message", data: "three" },
    { kind: "event", event: "message", data: "four" },
  ]);
});

Deno.test("an event without its blank line is incomplete and dropped", async () => {
  assert.deepEqual(await parse(["data: cut"]), []);
  assert.deepEqual(await parse(["data: done\r\r"]), [
    { kind: "event", event: "message", data: "done" },
  ]);
});

Deno.test("errors are typed by status, or by type inside a stream", () => {
  const body = (type: string) => ({ error: { message: "m", type, param: "p", code: "c" } });
  assert.ok(apiError(400, body("invalid_request_error")) instanceof BadRequestError);
  assert.ok(apiError(401, body("authentication_error")) instanceof AuthenticationError);
  const held = apiError(503, body("unavailable_error"), 7);
  assert.ok(held instanceof UnavailableError);
  assert.equal(held.retryAfter, 7);
  assert.equal(held.code, "c");
  assert.equal(held.param, "p");
  assert.ok(apiError(0, body("unavailable_error")) instanceof UnavailableError);
  assert.ok(apiError(0, body("server_error")) instanceof ServerError);
  assert.ok(apiError(502, "not json") instanceof ServerError);
});

Deno.test("Retry-After in seconds or as an HTTP date", () => {
  const now = Date.parse("2026-11-30T08:00:00Z");
  assert.equal(retryAfterSeconds("5", now), 5);
  assert.equal(retryAfterSeconds("Mon, 30 Nov 2026 08:00:30 GMT", now), 30);
  assert.equal(retryAfterSeconds(null, now), null);
  assert.equal(retryAfterSeconds("soon", now), null);
});
