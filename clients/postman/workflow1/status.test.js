// Workflow 1, step 3: poll until the job is completed (at most MAX_POLLS times).
// (Not named `data`: the sandbox has a global of that name.)
const MAX_POLLS = 240; // two minutes at one poll every half second
const ENDED = ["completed", "failed", "cancelled"];
pm.test("status answers 200", () => pm.response.to.have.status(200));
const job = pm.response.json().data;
pm.test("the status names the job, its state and its progress", () => {
  pm.expect(job.job_id).to.equal(pm.collectionVariables.get("job_id"));
  pm.expect(job.status).to.be.oneOf(["queued", "processing", ...ENDED]);
  pm.expect(job.progress.total_images).to.equal(1);
  pm.expect(job.progress.processed_images).to.be.within(0, 1);
  pm.expect(job.progress.percentage).to.be.within(0, 100);
});
const polls = Number(pm.collectionVariables.get("poll_count") || 0) + 1;
pm.collectionVariables.set("poll_count", polls);
if (ENDED.includes(job.status)) {
  pm.test("the job completed", () => {
    pm.expect(job.status, JSON.stringify(job.error)).to.equal("completed");
    pm.expect(job.progress.processed_images).to.equal(1);
    pm.expect(job.progress.percentage).to.equal(100);
    pm.expect(job.completed_at).to.be.a("string");
    pm.expect(job.results_url).to.include(job.job_id);
  });
} else if (polls >= MAX_POLLS) {
  pm.test("the job ends within the polls allowed", () => {
    const last = JSON.stringify(job.error);
    pm.expect.fail(`still ${job.status} after ${polls} polls; last error: ${last}`);
  });
} else {
  pm.execution.setNextRequest(pm.info.requestName);
}
