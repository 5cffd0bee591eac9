/**
 * The nesydet API client: openapi-fetch requests typed by `schema.d.ts`, which openapi-typescript
 * generates from the service's OpenAPI document (`npm run generate`, from ../openapi.json).
 *
 * Every call gives `{ data, error, response }`: `data` on success, otherwise `error`, the API's
 * error envelope, whose `error.code` is the machine-readable code to switch on. The helpers below
 * cover what the generated types cannot say alone: a multipart upload and polling a job.
 */
import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./schema.js";

export type { components, paths };
export type Schemas = components["schemas"];
/** The error envelope every failing request gets. */
export type ApiErrorBody = Schemas["ErrorResponse"];
export type JobStatusData = Schemas["JobStatusData"];
export type NesydetClient = Client<paths>;

export interface ClientOptions {
  /** An API key (`X-API-Key`); a local server needs none. */
  apiKey?: string;
  /** An access token from `POST /api/v1/auth/token`, when no API key is given. */
  accessToken?: string;
  /** Another fetch implementation (tests, proxies). */
  fetch?: typeof globalThis.fetch;
}

/** Returns a client of the API at `baseUrl` (e.g. `http://localhost:8000`). */
export function createNesydetClient(baseUrl: string, options: ClientOptions = {}): NesydetClient {
  const headers: Record<string, string> = {};
  if (options.apiKey) {
    headers["X-API-Key"] = options.apiKey;
  } else if (options.accessToken) {
    headers.Authorization = `Bearer ${options.accessToken}`;
  }
  return createClient<paths>({
    baseUrl,
    headers,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
}

/** An error answer of the API, as thrown by the helpers; `code` is the body's `error.code`. */
export class NesydetError extends Error {
  readonly status: number;
  readonly code: string;
  readonly body: ApiErrorBody;

  constructor(status: number, body: ApiErrorBody) {
    super(`${body.error.code}: ${body.error.message}`);
    this.name = "NesydetError";
    this.status = status;
    this.code = body.error.code;
    this.body = body;
  }
}

/** One image to upload: its file name and its bytes. */
export interface ImageFile {
  name: string;
  data: Blob | ArrayBuffer | Uint8Array;
}

/** Returns the upload's id and stored files; throws `NesydetError` when the API refuses it. */
export async function uploadImages(
  client: NesydetClient,
  files: ImageFile[],
  options: { idempotencyKey?: string } = {},
) {
  const form = new FormData();
  for (const file of files) {
    const blob = file.data instanceof Blob ? file.data : new Blob([new Uint8Array(file.data)]);
    form.append("files", blob, file.name);
  }
  const { data, error, response } = await client.POST("/api/v1/inference/upload", {
    // The generated type says string[] for binary parts; the serializer sends the real form.
    body: { files: [] },
    bodySerializer: () => form,
    params: options.idempotencyKey
      ? { header: { "Idempotency-Key": options.idempotencyKey } }
      : {},
  });
  if (error !== undefined) {
    throw new NesydetError(response.status, error);
  }
  return data.data;
}

const ENDED = new Set(["completed", "failed", "cancelled"]);

export interface WaitOptions {
  /** Pause between polls, in milliseconds (default 500). */
  intervalMs?: number;
  /** Give up after this many milliseconds (default 10 minutes). */
  timeoutMs?: number;
  /** Called with every status read. */
  onStatus?: (status: JobStatusData) => void;
}

/** Returns the job's status once it has ended (completed, failed or cancelled). */
export async function waitForJob(
  client: NesydetClient,
  jobId: string,
  options: WaitOptions = {},
): Promise<JobStatusData> {
  const { intervalMs = 500, timeoutMs = 600_000, onStatus } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { data, error, response } = await client.GET("/api/v1/jobs/{job_id}/status", {
      params: { path: { job_id: jobId } },
    });
    if (error !== undefined) {
      throw new NesydetError(response.status, error);
    }
    onStatus?.(data.data);
    if (ENDED.has(data.data.status)) {
      return data.data;
    }
    if (Date.now() > deadline) {
      const { status, error } = data.data;
      const last = JSON.stringify(error);
      throw new Error(`job ${jobId} still ${status} after ${timeoutMs} ms, last error: ${last}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
