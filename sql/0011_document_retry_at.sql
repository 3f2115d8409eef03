-- issue 9: when a document that failed for a passing reason (the store, the disk) is tried
-- again, as a field the documents page reads instead of a prefix of processing_error.
-- Written by the worker (service role) with the job's run_after; NULL otherwise. Users read it
-- through the table-wide SELECT grant of 0003 and may not write it (no column grant).
ALTER TABLE public.documents ADD COLUMN IF NOT EXISTS retry_at timestamptz;
