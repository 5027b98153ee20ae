"""The index on disk: a FAISS index, Parquet metadata and a JSON manifest, written atomically.

Modules: ``manifest`` (the format), ``lock`` (the one writer), ``reader`` (snapshots),
``writer`` (commits), ``faiss_index`` (FAISS index types), ``cache`` (derived data), ``check``.

Layout of an index folder::

    manifest.json                 commit point: format version, model, sampling, counts, file names
    index.g<N>.faiss              FAISS inner-product index over the segment vectors (float32)
    videos.g<N>.parquet           one row per video
    parts/<P>.segments.parquet    row i describes segment vector i of the part
    parts/<P>.vectors.npy         segment embeddings, float16, L2-normalised (source of truth)
    parts/<P>.frames.npy          frame embeddings, float16, L2-normalised
    parts/<P>.encoded.npy         per frame: encoded (True) or reusing the embedding before it (change gate)
    failures.csv                  videos the last build could not index, with the reason
    .lock                         held (flock) by the one writer
    cache/                        derived data (vadindex.index.cache), safe to delete

Parts are append-only: each commit adds one part and rewrites the video table (and, now and then,
the FAISS file) under a new generation number, then replaces ``manifest.json``. The FAISS file may
cover only the first ``faiss_rows`` segments: rewriting a large file at every commit would make a
build's writes grow with the square of its size, so during a build it is rewritten only when the
segments it lacks exceed a quarter of those it holds, and always at the end of a build. Readers
search the rows it lacks exactly, from the float16 parts (at most a fifth of the index).

Everything is written to a temporary file in the same folder and moved into place with
``os.replace``; the manifest goes last, so a crash at any moment leaves the previous commit intact. Files of a newer generation than the
manifest are leftovers of a crash and are removed by the next writer. The manifest records the size
and SHA-256 of every file it refers to, so ``vadindex check`` can tell a damaged file from a good one.
Only files named like the index's own are ever removed; a folder that holds anything else and has no
manifest is refused as an index location.
"""
