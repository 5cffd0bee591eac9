/**
 * Workflow 1 and the spec's client error handling, through the typed client, against a live
 * server, as the desktop app would run them.
 *
 * NESYDET_URL: the server (e.g. http://localhost:8000); NESYDET_TEST_IMAGE: a PNG to upload;
 * NESYDET_API_KEY: a key, when the server requires one.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";

import {
  type NesydetClient,
  type Schemas,
  createNesydetClient,
  NesydetError,
  uploadImages,
  waitForJob,
} from "../src/index.js";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`set ${name}: see the header of test/workflow.test.ts`);
  }
  return value;
}

const BASE_URL = required("NESYDET_URL");
const IMAGE = required("NESYDET_TEST_IMAGE");
const client = createNesydetClient(BASE_URL, { apiKey: process.env.NESYDET_API_KEY });
const UNKNOWN_UPLOAD = "upl_000000000000";
const UNKNOWN_JOB = "job_000000000000";

describe("Workflow 1: upload, predict, poll status until completed, results", () => {
  test("runs end to end with every status code and field as the spec says", async () => {
    const image = new Blob([await readFile(IMAGE)], { type: "image/png" });

    // 1-2. upload: the upload id and each file's id
    const upload = await uploadImages(client, [{ name: "scene.png", data: image }]);
    assert.match(upload.upload_id, /^upl_[0-9a-f]{12}$/);
    assert.equal(upload.file_count, 1);
    const file = upload.uploaded_files[0];
    assert.ok(file);
    assert.match(file.file_id, /^img_[0-9a-f]{12}$/);
    assert.equal(file.filename, "scene.png");
    assert.equal(file.format, "PNG");
    assert.equal(file.dimensions.length, 2);

    // 3-4. predict: 202 and a queued job
    const predicted = await client.POST("/api/v1/inference/predict", {
      body: {
        upload_id: upload.upload_id,
        file_ids: [file.file_id],
        config: { confidence_threshold: 0.25, sahi: { enabled: true } },
      },
    });
    assert.equal(predicted.response.status, 202);
    assert.equal(predicted.error, undefined);
    const job = predicted.data?.data;
    assert.ok(job);
    assert.match(job.job_id, /^job_[0-9a-f]{12}$/);
    assert.equal(job.status, "queued");
    assert.equal(job.file_count, 1);
    assert.equal(job.status_url, `/api/v1/jobs/${job.job_id}/status`);

    // 5-6. poll until it has ended
    const seen: string[] = [];
    const final = await waitForJob(client, job.job_id, {
      intervalMs: 250,
      timeoutMs: 120_000,
      onStatus: (status) => seen.push(status.status),
    });
    assert.equal(final.status, "completed", JSON.stringify(final.error));
    assert.ok(seen.every((s) => ["queued", "processing", "completed"].includes(s)), `${seen}`);
    assert.equal(final.progress.processed_images, 1);
    assert.equal(final.progress.percentage, 100);
    assert.ok(final.completed_at);

    // 7. results and visualization
    const results = await client.GET("/api/v1/jobs/{job_id}/results", {
      params: { path: { job_id: job.job_id }, query: { format: "json" } },
    });
    assert.equal(results.response.status, 200);
    const data = results.data?.data;
    assert.ok(data);
    assert.equal(data.job_id, job.job_id);
    // `data` is typed by its `format`: narrowing on it gives the json form's fields.
    if (data.format !== "json") throw new Error(`format ${data.format}, asked for json`);
    const entries = data.results;
    assert.equal(entries.length, 1);
    const entry = entries[0];
    assert.ok(entry);
    assert.equal(entry.file_id, file.file_id);
    assert.deepEqual(entry.dimensions, file.dimensions);
    for (const d of entry.detections) {
      assert.equal(typeof d.class_name, "string");
      assert.ok(d.confidence >= 0 && d.confidence <= 1, `confidence ${d.confidence}`);
      assert.ok(d.bbox.x_min <= d.bbox.x_max && d.bbox.y_min <= d.bbox.y_max);
    }

    const visual = await client.GET("/api/v1/jobs/{job_id}/visualization", {
      params: { path: { job_id: job.job_id } },
    });
    assert.equal(visual.response.status, 200);
    const shown = visual.data?.data;
    assert.ok(shown);
    if (shown.format !== "url") throw new Error(`format ${shown.format}, asked for url`);
    const links = shown.visualizations;
    assert.equal(links.length, 1);
    assert.equal(links[0]?.file_id, file.file_id);
    const annotated = await client.GET("/api/v1/files/{file_id}/{kind}", {
      params: { path: { file_id: file.file_id, kind: "annotated" }, query: { job_id: job.job_id } },
      parseAs: "blob",
    });
    assert.equal(annotated.response.status, 200);
    assert.match(annotated.response.headers.get("content-type") ?? "", /^image\//);
    assert.ok((annotated.data as Blob).size > 0);
  });
});

/**
 * The spec's "Client Error Handling (Windows App)" example, written against the typed client:
 * `error` is the typed error envelope, and the app switches on `error.error.code`.
 */
async function triggerInference(
  api: NesydetClient,
  uploadId: string,
  config: Schemas["JobConfig"],
  show: (message: string) => void,
): Promise<Schemas["PredictData"] | null> {
  try {
    const { data, error } = await api.POST("/api/v1/inference/predict", {
      body: { upload_id: uploadId, config },
    });
    if (error !== undefined) {
      switch (error.error.code) {
        case "UPLOAD_NOT_FOUND":
          show("Upload expired, please re-upload images");
          break;
        case "INVALID_CONFIG":
          show(`Invalid settings: ${error.error.details}`);
          break;
        default:
          show(error.error.message);
      }
      return null;
    }
    return data.data;
  } catch {
    show("Network error, please check connection");
    return null;
  }
}

describe("error handling: switch on error.code", () => {
  test("an unknown upload is UPLOAD_NOT_FOUND", async () => {
    const shown: string[] = [];
    assert.equal(await triggerInference(client, UNKNOWN_UPLOAD, {}, (m) => shown.push(m)), null);
    assert.deepEqual(shown, ["Upload expired, please re-upload images"]);
  });

  test("an out-of-range setting is INVALID_CONFIG, naming the field", async () => {
    const shown: string[] = [];
    const config = { confidence_threshold: 2 };
    const job = await triggerInference(client, UNKNOWN_UPLOAD, config, (m) => shown.push(m));
    assert.equal(job, null);
    assert.equal(shown.length, 1);
    assert.match(shown[0] ?? "", /^Invalid settings: .*confidence_threshold/);
  });

  test("a server that cannot be reached is a network error", async () => {
    const offline = createNesydetClient("http://127.0.0.1:9");
    const shown: string[] = [];
    assert.equal(await triggerInference(offline, UNKNOWN_UPLOAD, {}, (m) => shown.push(m)), null);
    assert.deepEqual(shown, ["Network error, please check connection"]);
  });

  test("a file that is no image is refused as INVALID_FORMAT, file by file", async () => {
    const pdf = new TextEncoder().encode("%PDF-1.4 not an image");
    try {
      await uploadImages(client, [{ name: "document.pdf", data: pdf }]);
      assert.fail("the upload was accepted");
    } catch (err) {
      assert.ok(err instanceof NesydetError, String(err));
      assert.equal(err.status, 400);
      assert.equal(err.code, "INVALID_FORMAT");
      assert.equal(err.body.error_code, "INVALID_FORMAT");
      assert.deepEqual(
        err.body.errors?.map((e) => [e.filename, e.error_code]),
        [["document.pdf", "INVALID_FORMAT"]],
      );
    }
  });

  test("an unknown job is JOB_NOT_FOUND, with the request's id", async () => {
    const { data, error, response } = await client.GET("/api/v1/jobs/{job_id}/status", {
      params: { path: { job_id: UNKNOWN_JOB } },
    });
    assert.equal(data, undefined);
    assert.equal(response.status, 404);
    assert.ok(error);
    switch (error.error.code) {
      case "JOB_NOT_FOUND":
        assert.equal(error.error.request_id, response.headers.get("x-request-id"));
        break;
      default:
        assert.fail(`expected JOB_NOT_FOUND, got ${error.error.code}`);
    }
    await assert.rejects(waitForJob(client, UNKNOWN_JOB), (err: unknown) => {
      return err instanceof NesydetError && err.code === "JOB_NOT_FOUND";
    });
  });
});
