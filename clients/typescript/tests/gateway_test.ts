// The client through a real gateway: models woken from zero by the real operator, held
// requests (SSE keep-alive comments), 503 + Retry-After, deadlines, API keys.
// tests/clients/test_typescript.py starts it all: gateway flags --keepalive 0.2
// --queue-size 1 --retry-after 1 and an API key file; models asleep at zero replicas.
import assert from "node:assert/strict";
import { AuthenticationError, Client, type Served, text, UnavailableError } from "../mod.ts";
import { hello, required, tiny } from "./env.ts";

const baseURL = required("SIESTA_GATEWAY_URL");
const siesta = new Client({ baseURL, apiKey: required("SIESTA_API_KEY") });
const sleeping = required("SIESTA_SLEEPING_MODEL"); // can wake: its node exists
const burst = required("SIESTA_BURST_MODEL"); // can wake too
const stuck = required("SIESTA_STUCK_MODEL"); // never wakes: its GPU never comes (wakeTimeout 3s)

async function queued(model: string): Promise<number> {
  const models = await siesta.models();
  return models.find((m) => m.id === model)?.siesta?.queued ?? -1;
}

async function until(what: string, check: () => Promise<boolean>, seconds: number): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds}s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("a model woken from zero: keep-alive comments first, then the answer", async () => {
  const before = (await siesta.models()).find((m) => m.id === sleeping);
  assert.equal(before?.siesta?.replicas, 0, JSON.stringify(before));
  const keepAlives: string[] = [];
  const served: Served[] = [];
  const answer = await text(
    await siesta.chat({ model: sleeping, messages: hello, ...tiny }, {
      timeoutMs: 120_000,
      onKeepAlive: (comment) => keepAlives.push(comment),
      onServed: (by) => served.push(by),
    }),
  );
  assert.ok(answer.length > 0);
  assert.ok(keepAlives.length >= 1, "a wake-up takes longer than one 0.2 s keep-alive interval");
  assert.deepEqual(new Set(keepAlives), new Set(["waiting for model"]));
  // The headers went out with the first keep-alive: who answered comes as SSE comments.
  assert.equal(served.length, 1, JSON.stringify(served));
  assert.equal(served[0].by, "gpu");
  assert.ok(served[0].wakeSeconds !== null && served[0].wakeSeconds > 0, JSON.stringify(served));
  const after = (await siesta.models()).find((m) => m.id === sleeping);
  assert.equal(after?.siesta?.readyEndpoints, 1, JSON.stringify(after));
});

Deno.test("models are listed and reachable as NAMESPACE/NAME as well", async () => {
  const models = await siesta.models();
  const bare = models.find((m) => m.id === sleeping);
  const namespace = bare?.siesta?.namespace;
  assert.ok(namespace, JSON.stringify(bare));
  const qualified = models.find((m) => m.id === `${namespace}/${sleeping}`);
  assert.equal(qualified?.siesta?.name, bare?.siesta?.name, JSON.stringify(models));
  assert.equal(qualified?.siesta?.bareNameHeldBy, null);
  const served: Served[] = [];
  const answer = await text(
    await siesta.chat({ model: `${namespace}/${sleeping}`, messages: hello, ...tiny }, {
      timeoutMs: 120_000,
      onServed: (by) => served.push(by),
    }),
  );
  assert.ok(answer.length > 0);
  // Awake: no wait, and who answered comes as a header.
  assert.deepEqual(served, [{ by: "gpu", wakeSeconds: null }]);
});

Deno.test("a 503 with Retry-After is retried within the deadline, then served", async () => {
  // The first request waits for the wake-up and fills the model's queue (size 1) ...
  let held = false;
  const first = siesta.chat({ model: burst, messages: hello, ...tiny }, {
    timeoutMs: 120_000,
    onKeepAlive: () => held = true,
  }).then(text);
  await until("the first request is held", () => Promise.resolve(held), 60);
  // ... so the second gets 503 model_busy, Retry-After 1, and retries until the model is up.
  const retries: UnavailableError[] = [];
  const second = await siesta.chat({ model: burst, messages: hello, ...tiny }, {
    timeoutMs: 120_000,
    onRetry: (error, delay) => {
      assert.equal(delay, 1);
      retries.push(error);
    },
  }).then(text);
  assert.ok((await first).length > 0);
  assert.ok(second.length > 0);
  assert.ok(retries.length >= 1);
  assert.equal(retries[0].code, "model_busy");
  assert.equal(retries[0].status, 503);
});

Deno.test("a Retry-After beyond the deadline is thrown at once as an UnavailableError", async () => {
  const controller = new AbortController();
  const holder = siesta.chat({ model: stuck, messages: hello }, { signal: controller.signal })
    .then(text).catch((e) => e);
  await until("one request held for the stuck model", async () => await queued(stuck) === 1, 30);
  const started = Date.now();
  const error = await siesta.chat({ model: stuck, messages: hello }, { timeoutMs: 500 })
    .catch((e) => e);
  assert.ok(error instanceof UnavailableError, String(error));
  assert.equal(error.code, "model_busy");
  assert.equal(error.retryAfter, 1);
  assert.ok(Date.now() - started < 500, "no waiting when the retry cannot fit");
  controller.abort();
  const aborted = await holder;
  assert.ok(aborted instanceof DOMException && aborted.name === "AbortError", String(aborted));
  await until("the aborted request left the queue", async () => await queued(stuck) === 0, 10);
});

Deno.test("past the model's wakeTimeout the stream ends with a typed error event", async () => {
  // The response has started (keep-alives), so the 503 arrives as an SSE `data:` event.
  let keepAlives = 0;
  const stream = await siesta.chat({ model: stuck, messages: hello }, {
    onKeepAlive: () => keepAlives++,
  });
  const error = await text(stream).catch((e) => e);
  assert.ok(error instanceof UnavailableError, String(error));
  assert.equal(error.code, "model_not_ready");
  assert.equal(error.status, 0, "inside the stream: no status line");
  assert.ok(keepAlives >= 1);
});

Deno.test("the caller's deadline ends a held request with a TimeoutError", async () => {
  const started = Date.now();
  const error = await siesta.chat({ model: stuck, messages: hello }, { timeoutMs: 1000 })
    .then(text).catch((e) => e);
  assert.ok(error instanceof DOMException && error.name === "TimeoutError", String(error));
  assert.ok(Date.now() - started < 2500);
});

Deno.test("a wrong API key is an AuthenticationError", async () => {
  const stranger = new Client({ baseURL, apiKey: "wrong" });
  const error = await stranger.chat({ model: sleeping, messages: hello }).catch((e) => e);
  assert.ok(error instanceof AuthenticationError, String(error));
  assert.equal(error.status, 401);
  assert.equal(error.code, "invalid_api_key");
});
