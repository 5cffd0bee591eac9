// Workflow 1, step 5: a link to the uploaded file's annotated image.
pm.test("visualization answers 200", () => pm.response.to.have.status(200));
const body = pm.response.json();
pm.test("the uploaded file has an annotated image link", () => {
  pm.expect(body.status).to.equal("success");
  pm.expect(body.data.visualizations).to.have.lengthOf(1);
  const item = body.data.visualizations[0];
  pm.expect(item.file_id).to.equal(pm.collectionVariables.get("file_id"));
  pm.expect(item.annotated_url).to.match(/^\/api\/v1\/files\/img_[0-9a-f]{12}\/annotated/);
});
