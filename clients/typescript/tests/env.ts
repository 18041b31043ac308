// Where the tests find the real servers: tests/clients/test_typescript.py starts them.
export function required(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} is not set: run these tests through tests/clients (README)`);
  return value;
}

/** Random weights say nothing; this keeps every answer non-empty and bounded. */
export const tiny = { max_tokens: 8, ignore_eos: true } as const;

export const hello = [{ role: "user" as const, content: "hello" }];
