/** Request and response shapes of the OpenAI-compatible API that Siesta serves. */

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** `json_schema` makes the server compile the schema to a grammar: the answer always parses. */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | {
    type: "json_schema";
    json_schema: { name: string; schema: Record<string, unknown>; strict?: boolean };
  };

/** Sampling fields shared by chat and text completions (siesta-server, llama-server). */
export interface SamplingFields {
  model: string;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  seed?: number;
  stop?: string | string[];
  presence_penalty?: number;
  frequency_penalty?: number;
  response_format?: ResponseFormat;
  /** Raw GBNF grammar (llama-server extension). */
  grammar?: string;
  /** Keep generating past end-of-sequence (llama-server extension). */
  ignore_eos?: boolean;
}

export interface ChatRequest extends SamplingFields {
  messages: ChatMessage[];
}

export interface CompletionRequest extends SamplingFields {
  prompt: string;
}

/**
 * One entry of `GET /v1/models`; the gateway adds a `siesta` object. Through the gateway a
 * model is listed as `NAMESPACE/ALIAS` (always reachable) and, when it holds it, by its bare
 * alias (the oldest model with that alias holds it).
 */
export interface Model {
  id: string;
  object: "model";
  created?: number;
  owned_by?: string;
  siesta?: {
    namespace: string;
    name: string;
    /** The ModelDeployment's status.phase: ScaledToZero, WaitingForGPU, Loading, Ready, ... */
    phase: string | null;
    replicas: number;
    readyReplicas: number;
    readyEndpoints: number;
    /** Whether the model has a CPU bridge that answers while its GPU replica wakes. */
    bridge?: boolean;
    /** Ready replicas of that bridge (X-Siesta-Served-By says who answered a request). */
    readyBridgeEndpoints?: number;
    queued: number;
    /** `NAMESPACE/NAME` of the older model holding this one's bare alias; null: this one. */
    bareNameHeldBy?: string | null;
  };
}

/** The body of every error: `{"error": {...}}`. */
export interface ErrorBody {
  message: string;
  type: string;
  param: string | null;
  code: string | number | null;
}
