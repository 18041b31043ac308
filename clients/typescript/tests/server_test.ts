// The client against one real siesta-server (a tiny random-weight GGUF, real inference).
import assert from "node:assert/strict";
import { BadRequestError, Client, NotFoundError, text } from "../mod.ts";
import { hello, required, tiny } from "./env.ts";

const siesta = new Client({ baseURL: required("SIESTA_SERVER_URL") });
const model = required("SIESTA_SERVER_MODEL");

Deno.test("chat streams the answer's text in pieces", async () => {
  const pieces: string[] = [];
  const stream = await siesta.chat({ model, messages: hello, ...tiny });
  for await (const piece of stream) pieces.push(piece);
  assert.ok(pieces.length > 1, `one piece per token, got ${JSON.stringify(pieces)}`);
  assert.ok(pieces.join("").length > 0);
});

Deno.test("complete streams a text completion", async () => {
  const answer = await text(await siesta.complete({ model, prompt: "Once upon", ...tiny }));
  assert.ok(answer.length > 0);
});

Deno.test("a JSON-schema response_format always parses and fits the schema", async () => {
  const schema = {
    type: "object",
    properties: {
      word: { type: "string", minLength: 1, maxLength: 8 },
      mood: { enum: ["calm", "wild"] },
    },
    required: ["word", "mood"],
  };
  for (const seed of [1, 2, 3]) {
    const answer = await text(
      await siesta.chat({
        model,
        messages: hello,
        seed,
        max_tokens: 200, // enough for the longest answer the grammar allows
        response_format: { type: "json_schema", json_schema: { name: "word", schema } },
      }),
    );
    const parsed = JSON.parse(answer);
    assert.equal(typeof parsed.word, "string", answer);
    assert.ok([...parsed.word].length >= 1 && [...parsed.word].length <= 8, answer);
    assert.ok(["calm", "wild"].includes(parsed.mood), answer);
  }
});

Deno.test("a GBNF grammar constrains the answer", async () => {
  const answer = await text(
    await siesta.complete({
      model,
      prompt: "Sleep?",
      max_tokens: 8,
      grammar: 'root ::= "yes" | "no"',
    }),
  );
  assert.ok(answer === "yes" || answer === "no", answer);
});

Deno.test("a schema keyword the server cannot enforce is a BadRequestError", async () => {
  const schema = { type: "string", pattern: "^[a-z]+$" };
  const error = await siesta.chat({
    model,
    messages: hello,
    response_format: { type: "json_schema", json_schema: { name: "p", schema } },
  }).catch((e) => e);
  assert.ok(error instanceof BadRequestError, String(error));
  assert.match(error.message, /pattern/);
});

Deno.test("models lists the served model", async () => {
  const models = await siesta.models();
  assert.deepEqual(models.map((m) => m.id), [model]);
});

Deno.test("an unknown model is a NotFoundError with OpenAI's fields", async () => {
  const error = await siesta.chat({ model: "no-such-model", messages: hello }).catch((e) => e);
  assert.ok(error instanceof NotFoundError, String(error));
  assert.equal(error.status, 404);
  assert.equal(error.code, "model_not_found");
});

Deno.test("a field out of range is a BadRequestError naming the field", async () => {
  const error = await siesta.chat({ model, messages: hello, max_tokens: 0 }).catch((e) => e);
  assert.ok(error instanceof BadRequestError, String(error));
  assert.equal(error.status, 400);
  assert.equal(error.param, "max_tokens");
});

Deno.test("an AbortSignal stops the stream mid-answer", async () => {
  const controller = new AbortController();
  const stream = await siesta.chat(
    { model, messages: hello, max_tokens: 100_000, ignore_eos: true },
    { signal: controller.signal },
  );
  const reader = stream.getReader();
  assert.equal((await reader.read()).done, false);
  controller.abort();
  const error = await (async () => {
    for (;;) if ((await reader.read()).done) return null;
  })().catch((e) => e);
  assert.ok(error instanceof DOMException && error.name === "AbortError", String(error));
});

Deno.test("timeoutMs ends a call that takes too long with a TimeoutError", async () => {
  const started = Date.now();
  const error = await (async () =>
    text(
      await siesta.chat({ model, messages: hello, max_tokens: 100_000, ignore_eos: true }, {
        timeoutMs: 300,
      }),
    ))().catch((e) => e);
  assert.ok(error instanceof DOMException && error.name === "TimeoutError", String(error));
  assert.ok(Date.now() - started < 10_000);
});
