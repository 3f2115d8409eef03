-- RPC functions. SECURITY INVOKER unless stated, so RLS applies to callers.

-- Search the caller's conversations by title and message text (newest first).
CREATE OR REPLACE FUNCTION public.search_conversations(query text, max_results integer DEFAULT 20)
RETURNS SETOF public.conversations
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  SELECT c.*
    FROM public.conversations c
   WHERE c.user_id = auth.uid()
     AND (c.title ILIKE '%' || replace(replace(replace(query, '\', '\\'), '%', '\%'), '_', '\_') || '%'
          OR EXISTS (SELECT 1 FROM public.messages m
                      WHERE m.conversation_id = c.id
                        AND m.content ILIKE '%' || replace(replace(replace(query, '\', '\\'), '%', '\%'), '_', '\_') || '%'))
   ORDER BY c.is_pinned DESC, c.updated_at DESC
   LIMIT least(greatest(max_results, 1), 200)
$$;
GRANT EXECUTE ON FUNCTION public.search_conversations(text, integer) TO authenticated, service_role;

-- Claim the next runnable ingest job for a worker (DESIGN D7). SKIP LOCKED lets
-- several workers share the queue; a job whose worker died (lock older than
-- stale_after) is claimed again.
CREATE OR REPLACE FUNCTION public.claim_ingest_job(worker text, stale_after interval DEFAULT '10 minutes')
RETURNS SETOF public.ingest_jobs
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
  claimed public.ingest_jobs;
BEGIN
  SELECT * INTO claimed
    FROM public.ingest_jobs j
   WHERE (j.status = 'queued' AND j.run_after <= now())
      OR (j.status = 'running' AND j.locked_at < now() - stale_after)
   ORDER BY j.run_after, j.created_at
   LIMIT 1
   FOR UPDATE SKIP LOCKED;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  UPDATE public.ingest_jobs
     SET status = 'running', attempts = attempts + 1, locked_by = worker, locked_at = now()
   WHERE id = claimed.id
  RETURNING * INTO claimed;
  RETURN NEXT claimed;
END
$$;
REVOKE ALL ON FUNCTION public.claim_ingest_job(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.claim_ingest_job(text, interval) TO service_role;
