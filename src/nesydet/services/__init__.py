"""Use cases: uploads, jobs, results. They call repositories, storage and the pipeline."""
