-- The ingest queue against hostile input (issue 12): every claim counts an
-- attempt, stale ones included, and a job whose worker keeps dying is failed
-- for good after max_attempts instead of being claimed forever; users take
-- turns (the least recently served user with no running job first), so one
-- user's queue cannot starve another's; a running job is kept alive by a
-- heartbeat, so a dead worker's job is reclaimed after about a minute.

CREATE OR REPLACE FUNCTION public.claim_ingest_job(worker text, stale_after interval DEFAULT '60 seconds')
RETURNS SETOF public.ingest_jobs
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
  claimed public.ingest_jobs;
  who record;
BEGIN
  -- Jobs whose worker died on every attempt: failed for good, with a reason a pharmacist can act on.
  WITH dead AS (
    UPDATE public.ingest_jobs j
       SET status = 'failed', locked_by = NULL, locked_at = NULL,
           last_error = 'processing stopped unexpectedly on each of ' || j.attempts || ' attempts'
     WHERE j.status = 'running' AND j.locked_at < now() - stale_after AND j.attempts >= j.max_attempts
    RETURNING j.document_id, j.attempts)
  UPDATE public.documents d
     SET status = 'failed',
         processing_error = d.filename || ' could not be processed: processing stopped unexpectedly on each of '
                            || dead.attempts || ' attempts (the file may be too large or complex). '
                            || 'Try a smaller or simpler version of the file.'
    FROM dead
   WHERE d.id = dead.document_id AND d.status IN ('pending', 'processing');

  -- Users with runnable work: those with nothing running first, then the least recently served.
  FOR who IN
    SELECT r.user_id
      FROM (SELECT j.user_id, min(j.created_at) AS first_at
              FROM public.ingest_jobs j
             WHERE (j.status = 'queued' AND j.run_after <= now())
                OR (j.status = 'running' AND j.locked_at < now() - stale_after)
             GROUP BY j.user_id) r
     ORDER BY (SELECT count(*) FROM public.ingest_jobs b
                WHERE b.user_id = r.user_id AND b.status = 'running' AND b.locked_at >= now() - stale_after),
              (SELECT max(s.locked_at) FROM public.ingest_jobs s WHERE s.user_id = r.user_id) NULLS FIRST,
              r.first_at
     LIMIT 100
  LOOP
    SELECT * INTO claimed
      FROM public.ingest_jobs j
     WHERE j.user_id = who.user_id
       AND ((j.status = 'queued' AND j.run_after <= now())
            OR (j.status = 'running' AND j.locked_at < now() - stale_after))
     ORDER BY j.run_after, j.created_at
     LIMIT 1
       FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
      UPDATE public.ingest_jobs
         SET status = 'running', attempts = attempts + 1, locked_by = worker, locked_at = now()
       WHERE id = claimed.id
      RETURNING * INTO claimed;
      RETURN NEXT claimed;
      RETURN;
    END IF;
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION public.claim_ingest_job(text, interval) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.claim_ingest_job(text, interval) TO service_role;

-- A running job's heartbeat: true while this worker still holds it (false once it was
-- reclaimed as stale, so the worker stops and writes nothing).
CREATE OR REPLACE FUNCTION public.ingest_heartbeat(p_job_id uuid, p_worker text)
RETURNS boolean
LANGUAGE sql VOLATILE SET search_path = pg_catalog, public AS $$
  WITH beat AS (
    UPDATE public.ingest_jobs SET locked_at = now()
     WHERE id = p_job_id AND locked_by = p_worker AND status = 'running'
    RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM beat)
$$;
REVOKE ALL ON FUNCTION public.ingest_heartbeat(uuid, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.ingest_heartbeat(uuid, text) TO service_role;
