"""Running inference jobs in a worker process.

- ``runner``: the steps of a job (claim, image by image, finish, retry or fail);
- ``store``: claiming a job and persisting its progress and results (database, status cache);
- ``artefacts``: reading input images and storing labels, thumbnails and annotated images;
- ``retry``: the pure retry policy; ``failures``: how a run ends early;
- ``saver``, ``io_loop``, ``heartbeat``: the worker's saving thread, I/O loop and heartbeat.
"""
