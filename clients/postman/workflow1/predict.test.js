// Workflow 1, step 2: 202 with a queued job and where to poll it.
pm.test("predict answers 202", () => pm.response.to.have.status(202));
const body = pm.response.json();
pm.test("the job is accepted and queued", () => {
  pm.expect(body.status).to.equal("accepted");
  pm.expect(body.data.job_id).to.match(/^job_[0-9a-f]{12}$/);
  pm.expect(body.data.status).to.equal("queued");
  pm.expect(body.data.file_count).to.equal(1);
  pm.expect(body.data.created_at).to.be.a("string");
  pm.expect(body.data.status_url).to.equal(`/api/v1/jobs/${body.data.job_id}/status`);
});
pm.collectionVariables.set("job_id", body.data.job_id);
pm.collectionVariables.set("poll_count", 0);
