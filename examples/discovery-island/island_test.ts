// The game as a real process (deno run main.ts) against a real siesta-server or gateway:
// it starts, answers a combination through the model, keeps the first discoverer in Deno KV,
// and refuses malformed requests. Started by tests/clients/test_typescript.py (README).
import assert from "node:assert/strict";

const STARTERS = ["Water", "Earth", "Fire", "Wind", "Plants"];
const url = Deno.env.get("SIESTA_SERVER_URL");
const model = Deno.env.get("SIESTA_SERVER_MODEL");
assert.ok(url && model, "SIESTA_SERVER_URL and SIESTA_SERVER_MODEL come from tests/clients");

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function startGame(kvPath: string): Promise<{ base: string; stop: () => Promise<void> }> {
  const port = freePort();
  const game = new Deno.Command(Deno.execPath(), {
    // What `deno task start` runs; not through `deno task`, so SIGTERM reaches the game.
    args: ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-write", "main.ts"],
    cwd: import.meta.dirname,
    env: { PORT: String(port), ISLAND_KV: kvPath, SIESTA_URL: url!, SIESTA_MODEL: model! },
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const page = await fetch(base).then((r) => r.text()).catch(() => null);
    if (page !== null) {
      assert.match(page, /Discovery Island/);
      break;
    }
    if (Date.now() > deadline) throw new Error("the game did not start within 60 s");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    base,
    stop: async () => {
      game.kill("SIGTERM");
      await game.status;
    },
  };
}

const post = (base: string, body: string) =>
  fetch(`${base}/combine`, { method: "POST", body }).then(async (r) => [r.status, await r.json()]);

Deno.test("Discovery Island: combine, remember the first discoverer, refuse bad input", async () => {
  const kvPath = await Deno.makeTempFile({ suffix: ".kv" });
  const game = await startGame(kvPath);
  try {
    const start = await (await fetch(`${game.base}/elements`)).json();
    assert.deepEqual(start.map((e: { noun: string }) => e.noun).sort(), [...STARTERS].sort());

    const [status, found] = await post(game.base, '{"a":"Water","b":"Fire","player":"ada"}');
    assert.equal(status, 200, JSON.stringify(found));
    assert.match(found.noun, /^[A-Z][a-z]{2,15}$/);
    assert.equal(found.new, !STARTERS.includes(found.noun));

    // The same pair in the other order by someone else: the same noun, ada stays its finder.
    const [, again] = await post(game.base, '{"a":"Fire","b":"Water","player":"bob"}');
    assert.equal(again.noun, found.noun);
    assert.equal(again.new, false);
    assert.equal(again.by, found.new ? "ada" : "nature");

    const everyone = await (await fetch(`${game.base}/elements`)).json();
    assert.ok(everyone.some((e: { noun: string }) => e.noun === found.noun));

    for (
      const bad of [
        "{",
        '{"a":"Water","b":"Lava","player":"ada"}', // Lava is not found yet
        '{"a":"Water","b":"Fire"}', // no player
        '{"a":"Water","b":"Fire","player":"<script>"}',
        '["Water","Fire"]',
      ]
    ) {
      const [code, refused] = await post(game.base, bad);
      assert.equal(code, 400, bad);
      assert.match(refused.error, /send JSON/);
    }
    assert.equal(await fetch(`${game.base}/nowhere`).then((r) => r.body?.cancel()), undefined);
  } finally {
    await game.stop();
  }
  // The discovery outlives the game: it is in the KV file.
  const kv = await Deno.openKv(kvPath);
  try {
    const pairs = await Array.fromAsync(kv.list<string>({ prefix: ["pairs"] }));
    assert.equal(pairs.length, 1);
    assert.deepEqual(pairs[0].key, ["pairs", "Fire", "Water"]);
  } finally {
    kv.close();
  }
});
