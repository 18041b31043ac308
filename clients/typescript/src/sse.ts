/**
 * Server-sent events (the WHATWG event-stream format) as a Web Streams TransformStream:
 * text in (from TextDecoderStream), events and comments out. No I/O, so it runs anywhere.
 */

/** A dispatched event (its `data:` lines joined by "\n"), or a `:` comment such as a keep-alive. */
export type SSEMessage =
  | { kind: "event"; event: string; data: string }
  | { kind: "comment"; text: string };

/** Splits decoded text into SSE messages; chunks may end anywhere, even inside "\r\n". */
export class SSEParser extends TransformStream<string, SSEMessage> {
  constructor() {
    let buffer = "";
    let data: string[] = [];
    let event = "";
    const line = (text: string, out: TransformStreamDefaultController<SSEMessage>): void => {
      if (text === "") { // a blank line dispatches the event collected so far
        if (data.length > 0) {
          out.enqueue({ kind: "event", event: event || "message", data: data.join("\n") });
        }
        data = [];
        event = "";
        return;
      }
      if (text.startsWith(":")) {
        out.enqueue({ kind: "comment", text: text.slice(1).trimStart() });
        return;
      }
      const colon = text.indexOf(":");
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
      // `id` and `retry` only matter to EventSource reconnection, which a POST never does.
    };
    super({
      transform(chunk, out) {
        buffer += chunk;
        // A "\r" at the very end may be the first half of "\r\n": wait for the next chunk.
        const pattern = /\r\n|\r(?!$)|\n/g;
        let start = 0;
        for (let match = pattern.exec(buffer); match; match = pattern.exec(buffer)) {
          line(buffer.slice(start, match.index), out);
          start = match.index + match[0].length;
        }
        buffer = buffer.slice(start);
      },
      flush(out) {
        // A final "\r" did end its line; anything after the last line break is incomplete,
        // and so is an event without its blank line: both are dropped, as the spec says.
        if (buffer.endsWith("\r")) line(buffer.slice(0, -1), out);
      },
    });
  }
}
