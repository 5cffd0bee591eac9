// Workflow 1, step 4: the completed job's detections as JSON, one entry per file.
pm.test("results answer 200", () => pm.response.to.have.status(200));
const body = pm.response.json();
pm.test("the results are the job's, one entry for the uploaded file", () => {
  pm.expect(body.status).to.equal("success");
  pm.expect(body.data.job_id).to.equal(pm.collectionVariables.get("job_id"));
  pm.expect(body.data.format).to.equal("json");
  pm.expect(body.data.results).to.have.lengthOf(1);
  const entry = body.data.results[0];
  pm.expect(entry.file_id).to.equal(pm.collectionVariables.get("file_id"));
  pm.expect(entry.filename).to.equal("scene.png");
  pm.expect(entry.dimensions).to.have.lengthOf(2);
  pm.expect(entry.detections).to.be.an("array");
});
pm.test("every detection has a class, a confidence and boxes", () => {
  for (const d of body.data.results[0].detections) {
    pm.expect(d.class_id).to.be.a("number");
    pm.expect(d.class_name).to.be.a("string");
    pm.expect(d.confidence).to.be.within(0, 1);
    pm.expect(d.bbox).to.include.keys("x_min", "y_min", "x_max", "y_max");
    pm.expect(d.bbox_normalized).to.include.keys("center_x", "center_y", "width", "height");
  }
});
