-- Register an upload in one transaction: the document row (or the existing one
-- with the same bytes in the same scope), the upload-history row and the
-- ingest job. Runs as the caller, so RLS scopes both the lookup and the writes.
CREATE OR REPLACE FUNCTION public.register_document(
  p_id uuid, p_conversation_id uuid, p_sha256 text, p_filename text, p_file_type text,
  p_file_size bigint, p_metadata jsonb DEFAULT '{}')
RETURNS TABLE (document jsonb, duplicate boolean)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
  d public.documents;
  dup boolean := false;
BEGIN
  IF p_conversation_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM public.conversations c WHERE c.id = p_conversation_id) THEN
    RAISE EXCEPTION 'conversation not found' USING ERRCODE = 'P0002';
  END IF;
  SELECT * INTO d FROM public.documents x
   WHERE x.user_id = auth.uid() AND x.sha256 = p_sha256
     AND x.conversation_id IS NOT DISTINCT FROM p_conversation_id;
  IF FOUND THEN
    dup := true;
  ELSE
    BEGIN
      INSERT INTO public.documents (id, user_id, conversation_id, sha256, filename, file_type, file_size, metadata)
      VALUES (p_id, auth.uid(), p_conversation_id, p_sha256, p_filename, p_file_type, p_file_size,
              coalesce(p_metadata, '{}'))
      RETURNING * INTO d;
    EXCEPTION WHEN unique_violation THEN  -- the same bytes registered concurrently
      SELECT * INTO d FROM public.documents x
       WHERE x.user_id = auth.uid() AND x.sha256 = p_sha256
         AND x.conversation_id IS NOT DISTINCT FROM p_conversation_id;
      dup := true;
    END;
    IF NOT dup THEN
      INSERT INTO public.ingest_jobs (document_id, user_id) VALUES (d.id, d.user_id);
    END IF;
  END IF;
  INSERT INTO public.uploads (user_id, document_id, conversation_id, filename, file_type, file_size, sha256, outcome)
  VALUES (auth.uid(), d.id, p_conversation_id, p_filename, p_file_type, p_file_size, p_sha256,
          CASE WHEN dup THEN 'duplicate' ELSE 'accepted' END);
  RETURN QUERY SELECT to_jsonb(d), dup;
END
$$;
REVOKE ALL ON FUNCTION public.register_document(uuid, uuid, text, text, text, bigint, jsonb) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.register_document(uuid, uuid, text, text, text, bigint, jsonb) TO authenticated;
