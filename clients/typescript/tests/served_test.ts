// Who answered (onServed) from fixed gateway answers: headers, or SSE comments when a held
// stream's headers went out first. A fetch that returns fixed responses: no I/O.
import assert from "node:assert/strict";
import { Client, type Served, text } from "../mod.ts";

const chunk = (content: string) =>
  `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`;

function answering(body: string, headers: Record<string, string> = {}): Client {
  const fetch = () =>
    Promise.resolve(
      new Response(body, { headers: { "Content-Type": "text/event-stream", ...headers } }),
    );
  return new Client({ baseURL: "http://gateway.invalid/v1", fetch });
}

async function ask(client: Client): Promise<{ answer: string; served: Served[]; kept: string[] }> {
  const served: Served[] = [];
  const kept: string[] = [];
  const stream = await client.chat({ model: "m", messages: [] }, {
    onServed: (by) => served.push(by),
    onKeepAlive: (comment) => kept.push(comment),
  });
  return { answer: await text(stream), served, kept };
}

Deno.test("an awake model: who answered comes in the headers, once", async () => {
  const client = answering(chunk("a") + chunk("b") + "data: [DONE]\n\n", {
    "X-Siesta-Served-By": "bridge",
  });
  assert.deepEqual(await ask(client), {
    answer: "ab",
    served: [{ by: "bridge", wakeSeconds: null }],
    kept: [],
  });
});

Deno.test("a held stream: keep-alives, then who answered as comments, before the text", async () => {
  const body = ": waiting for model\n\n: waiting for model\n\n" +
    ": X-Siesta-Served-By: gpu\n: X-Siesta-Wake-Seconds: 12.345\n\n" +
    chunk("hi") + "data: [DONE]\n\n";
  assert.deepEqual(await ask(answering(body)), {
    answer: "hi",
    served: [{ by: "gpu", wakeSeconds: 12.345 }],
    kept: ["waiting for model", "waiting for model"],
  });
});

Deno.test("a server that does not say (a bare siesta-server): onServed is not called", async () => {
  const client = answering(": something else: entirely\n\n" + chunk("x") + "data: [DONE]\n\n");
  assert.deepEqual(await ask(client), {
    answer: "x",
    served: [],
    kept: ["something else: entirely"],
  });
});
