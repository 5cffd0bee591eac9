// Workflow 1, step 1: 200 with an upload id and the stored file's metadata.
pm.test("upload answers 200", () => pm.response.to.have.status(200));
pm.test("every response carries X-Request-ID and X-API-Version", () => {
  pm.response.to.have.header("X-Request-ID");
  pm.response.to.have.header("X-API-Version", "1.0");
});
const body = pm.response.json();
pm.test("the envelope says success", () => {
  pm.expect(body.status).to.equal("success");
  pm.expect(body.message).to.be.a("string");
});
pm.test("the upload has an id and one file with its metadata", () => {
  pm.expect(body.data.upload_id).to.match(/^upl_[0-9a-f]{12}$/);
  pm.expect(body.data.file_count).to.equal(1);
  pm.expect(body.data.uploaded_files).to.have.lengthOf(1);
  const file = body.data.uploaded_files[0];
  pm.expect(file.file_id).to.match(/^img_[0-9a-f]{12}$/);
  pm.expect(file.filename).to.equal("scene.png");
  pm.expect(file.format).to.be.oneOf(["JPEG", "PNG", "TIFF"]);
  pm.expect(file.size_bytes).to.be.above(0);
  pm.expect(file.dimensions).to.have.lengthOf(2);
});
pm.collectionVariables.set("upload_id", body.data.upload_id);
pm.collectionVariables.set("file_id", body.data.uploaded_files[0].file_id);
