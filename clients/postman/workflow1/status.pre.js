// Every poll after the first waits half a second: the test script below sends this request
// again until the job ends.
if (Number(pm.collectionVariables.get("poll_count") || 0) > 0) {
  setTimeout(() => {}, 500);
}
