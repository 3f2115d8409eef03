-- File bytes are bound to the account that stored them (issue 12, M1).
-- Blobs are content-addressed and shared, so a hash alone must never let a
-- user reach bytes someone else uploaded. The server writes an upload proof
-- (service role) after it has stored the bytes a user sent; register_document
-- takes the hash and size from that proof, never from the caller, and no
-- user-written documents row may name a hash without a proof of its own.

CREATE TABLE IF NOT EXISTS public.upload_proofs (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id    uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
  sha256     text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  file_size  bigint NOT NULL CHECK (file_size >= 0),
  stored_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, sha256)
);
ALTER TABLE public.upload_proofs ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.upload_proofs FROM PUBLIC, anon, authenticated;
GRANT ALL ON public.upload_proofs TO service_role;
-- a user may see their own proofs (hashes of bytes they sent); only the server writes them
GRANT SELECT ON public.upload_proofs TO authenticated;
DROP POLICY IF EXISTS upload_proofs_owner_read ON public.upload_proofs;
CREATE POLICY upload_proofs_owner_read ON public.upload_proofs FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- Documents that exist already were uploaded by their owners.
INSERT INTO public.upload_proofs (user_id, sha256, file_size)
SELECT DISTINCT ON (d.user_id, d.sha256) d.user_id, d.sha256, coalesce(d.file_size, 0)
  FROM public.documents d
 WHERE d.sha256 IS NOT NULL
ON CONFLICT (user_id, sha256) DO NOTHING;

-- Any documents row a user writes (the RPC, or a direct POST /documents) must name
-- bytes that user stored. Runs as the caller, so RLS shows it only the caller's proofs.
CREATE OR REPLACE FUNCTION public.documents_require_upload_proof() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
  -- a row for someone else is RLS's to refuse (42501); here: the caller's own rows
  IF NEW.sha256 IS NOT NULL AND current_user IN ('authenticated', 'anon')
     AND NEW.user_id IS NOT DISTINCT FROM auth.uid()
     AND NOT EXISTS (SELECT 1 FROM public.upload_proofs p
                      WHERE p.user_id = NEW.user_id AND p.sha256 = NEW.sha256) THEN
    RAISE EXCEPTION 'these file bytes were not uploaded by this account' USING ERRCODE = '42501',
      HINT = 'a document can only use file bytes its owner uploaded';
  END IF;
  RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION public.documents_require_upload_proof() FROM PUBLIC, anon, authenticated;
DROP TRIGGER IF EXISTS documents_upload_proof ON public.documents;
CREATE TRIGGER documents_upload_proof BEFORE INSERT OR UPDATE OF sha256 ON public.documents
  FOR EACH ROW EXECUTE FUNCTION public.documents_require_upload_proof();

-- The caller-trusted version is gone: its hash came from the request.
DROP FUNCTION IF EXISTS public.register_document(uuid, uuid, text, text, text, bigint, jsonb);

-- Register an upload in one transaction: the document row (or the existing one with
-- the same bytes in the same scope), the upload-history row and the ingest job.
-- The hash and size come from the caller's own upload proof. Runs as the caller,
-- so RLS scopes the proof, the lookup and the writes.
CREATE OR REPLACE FUNCTION public.register_document(
  p_id uuid, p_conversation_id uuid, p_upload_id uuid, p_filename text, p_file_type text,
  p_metadata jsonb DEFAULT '{}')
RETURNS TABLE (document jsonb, duplicate boolean)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
  proof public.upload_proofs;
  d public.documents;
  dup boolean := false;
BEGIN
  SELECT * INTO proof FROM public.upload_proofs p WHERE p.id = p_upload_id AND p.user_id = auth.uid();
  IF NOT FOUND THEN
    RAISE EXCEPTION 'upload not found' USING ERRCODE = 'P0002',
      HINT = 'upload the file again';
  END IF;
  IF p_conversation_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM public.conversations c WHERE c.id = p_conversation_id) THEN
    RAISE EXCEPTION 'conversation not found' USING ERRCODE = 'P0002';
  END IF;
  SELECT * INTO d FROM public.documents x
   WHERE x.user_id = auth.uid() AND x.sha256 = proof.sha256
     AND x.conversation_id IS NOT DISTINCT FROM p_conversation_id;
  IF FOUND THEN
    dup := true;
  ELSE
    BEGIN
      INSERT INTO public.documents (id, user_id, conversation_id, sha256, filename, file_type, file_size, metadata)
      VALUES (p_id, auth.uid(), p_conversation_id, proof.sha256, p_filename, p_file_type, proof.file_size,
              coalesce(p_metadata, '{}'))
      RETURNING * INTO d;
    EXCEPTION WHEN unique_violation THEN  -- the same bytes registered concurrently
      SELECT * INTO d FROM public.documents x
       WHERE x.user_id = auth.uid() AND x.sha256 = proof.sha256
         AND x.conversation_id IS NOT DISTINCT FROM p_conversation_id;
      dup := true;
    END;
    IF NOT dup THEN
      INSERT INTO public.ingest_jobs (document_id, user_id) VALUES (d.id, d.user_id);
    END IF;
  END IF;
  INSERT INTO public.uploads (user_id, document_id, conversation_id, filename, file_type, file_size, sha256, outcome)
  VALUES (auth.uid(), d.id, p_conversation_id, p_filename, p_file_type, proof.file_size, proof.sha256,
          CASE WHEN dup THEN 'duplicate' ELSE 'accepted' END);
  RETURN QUERY SELECT to_jsonb(d), dup;
END
$$;
REVOKE ALL ON FUNCTION public.register_document(uuid, uuid, uuid, text, text, jsonb) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.register_document(uuid, uuid, uuid, text, text, jsonb) TO authenticated;
