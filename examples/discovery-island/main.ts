// Discovery Island: pick two elements, the model invents the thing they make together, and
// whoever finds a new one first is remembered in Deno KV for every player.
import { APIError, Client, text } from "../../clients/typescript/mod.ts";

type Discovery = { noun: string; by: string; from: string[] };
const STARTERS = ["Water", "Earth", "Fire", "Wind", "Plants"];
const NOUN = /^[A-Z][a-z]{2,11}$/; // one capitalised word: the grammar below, checked again
// Worked examples, so that a small model (the demo's has 135M parameters) answers with
// a real thing rather than a made-up word.
const EXAMPLES = [
  ["Fire", "Water", "Steam"],
  ["Earth", "Water", "Mud"],
  ["Fire", "Sand", "Glass"],
  ["Water", "Wind", "Wave"],
  ["Cold", "Water", "Ice"],
  ["Earth", "Plants", "Forest"],
  ["Fire", "Wood", "Ash"],
];
const PLAYER = /^[\p{L}\p{N} _-]{1,24}$/u;

const siesta = new Client({
  baseURL: Deno.env.get("SIESTA_URL") ?? "http://127.0.0.1:8080/v1", // `make demo`'s gateway
  apiKey: Deno.env.get("SIESTA_API_KEY"),
});
const model = Deno.env.get("SIESTA_MODEL") ?? "tiny-chat";
const kv = await Deno.openKv(Deno.env.get("ISLAND_KV"));
for (const noun of STARTERS) {
  const key = ["elements", noun];
  await kv.atomic().check({ key, versionstamp: null }).set(key, { noun, by: "nature", from: [] })
    .commit();
}

async function elements(): Promise<Discovery[]> {
  const found: Discovery[] = [];
  for await (const entry of kv.list<Discovery>({ prefix: ["elements"] })) found.push(entry.value);
  return found;
}

/** The model's noun for a pair; the first answer for a pair is kept, so it never changes. */
async function invent(pair: string[]): Promise<string> {
  const key = ["pairs", ...pair];
  const known = await kv.get<string>(key);
  if (known.value) return known.value;
  const noun = await text(
    await siesta.chat({
      model,
      temperature: 0.5,
      max_tokens: 12, // the grammar allows at most 12 letters
      messages: [
        { role: "system", content: "You name what two things make together: one real noun." },
        ...EXAMPLES.flatMap(([a, b, made]) => [
          { role: "user" as const, content: `${a} + ${b}` },
          { role: "assistant" as const, content: made },
        ]),
        { role: "user", content: `${pair[0]} + ${pair[1]}` },
      ],
      grammar: `root ::= [A-Z] [a-z]{2,11}`, // GBNF: every token is checked against it
    }, { timeoutMs: 120_000 }), // long enough for the model to wake from zero
  );
  if (!NOUN.test(noun)) throw new Error(`not one noun: ${JSON.stringify(noun)}`);
  await kv.atomic().check({ key, versionstamp: null }).set(key, noun).commit();
  return (await kv.get<string>(key)).value ?? noun;
}

async function combine(request: Request): Promise<Response> {
  const body = await request.json().catch(() => null);
  const { a, b, player } = body ?? {};
  const known = async (name: unknown) =>
    typeof name === "string" && (await kv.get(["elements", name])).value !== null;
  if (!(await known(a)) || !(await known(b)) || !PLAYER.test(String(player ?? ""))) {
    const message = "send JSON {a, b, player}: two found elements and your name (1-24 letters)";
    return Response.json({ error: message }, { status: 400 });
  }
  let noun: string;
  try {
    noun = await invent([a, b].sort());
  } catch (error) { // the model asleep past our deadline, or down: say so, keep nothing
    const status = error instanceof APIError && error.status >= 500 ? error.status : 502;
    return Response.json({ error: String(error) }, { status });
  }
  const discovery: Discovery = { noun, by: player, from: [a, b] };
  const key = ["elements", noun];
  const first = await kv.atomic().check({ key, versionstamp: null }).set(key, discovery).commit();
  const kept = first.ok ? discovery : (await kv.get<Discovery>(key)).value;
  return Response.json({ ...kept, new: first.ok });
}

const page = await Deno.readTextFile(new URL("index.html", import.meta.url));
Deno.serve({ port: Number(Deno.env.get("PORT") ?? 8000) }, async (request) => {
  const { pathname } = new URL(request.url);
  const route = `${request.method} ${pathname}`;
  if (route === "GET /") return new Response(page, { headers: { "content-type": "text/html" } });
  if (route === "GET /elements") return Response.json(await elements());
  if (route === "POST /combine") return await combine(request);
  return Response.json({ error: `no route ${route}` }, { status: 404 });
});
