-- References that cannot be used as oracles for other users' ids (issue 12, L3).
-- A foreign key on a bare id answers "that id exists" to anyone who may insert:
-- pointing an uploads row at another user's document failed differently from
-- pointing it at nothing. Keyed on (id, user_id), both fail the same way.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'documents_id_user_id_key') THEN
    ALTER TABLE public.documents ADD CONSTRAINT documents_id_user_id_key UNIQUE (id, user_id);
  END IF;
END
$$;

ALTER TABLE public.uploads DROP CONSTRAINT IF EXISTS uploads_document_id_fkey;
ALTER TABLE public.uploads DROP CONSTRAINT IF EXISTS uploads_conversation_id_fkey;
ALTER TABLE public.uploads DROP CONSTRAINT IF EXISTS uploads_document_owner_fkey;
ALTER TABLE public.uploads DROP CONSTRAINT IF EXISTS uploads_conversation_owner_fkey;
ALTER TABLE public.uploads ADD CONSTRAINT uploads_document_owner_fkey
  FOREIGN KEY (document_id, user_id) REFERENCES public.documents (id, user_id) ON DELETE SET NULL (document_id);
ALTER TABLE public.uploads ADD CONSTRAINT uploads_conversation_owner_fkey
  FOREIGN KEY (conversation_id, user_id) REFERENCES public.conversations (id, user_id)
  ON DELETE SET NULL (conversation_id);

-- Copy a conversation and its messages (new ids, same order and times). A new id that
-- is already taken gives the same answer whoever owns it: the caller's own earlier copy
-- of the same source is returned (a retry), anything else is "conversation not found",
-- exactly as for a source id the caller cannot see.
CREATE OR REPLACE FUNCTION public.duplicate_conversation(p_id uuid, p_new_id uuid DEFAULT NULL)
RETURNS SETOF public.conversations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $$
DECLARE
  src public.conversations;
  dst public.conversations;
BEGIN
  SELECT * INTO src FROM public.conversations c WHERE c.id = p_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'conversation not found' USING ERRCODE = 'P0002';
  END IF;
  BEGIN
    INSERT INTO public.conversations (id, user_id, title, model)
    VALUES (coalesce(p_new_id, gen_random_uuid()), src.user_id, left('Copy of ' || src.title, 200), src.model)
    RETURNING * INTO dst;
  EXCEPTION WHEN unique_violation THEN
    SELECT * INTO dst FROM public.conversations c
     WHERE c.id = p_new_id AND c.user_id = src.user_id AND c.title = left('Copy of ' || src.title, 200);
    IF FOUND THEN
      RETURN QUERY SELECT * FROM public.conversations c WHERE c.id = dst.id;
      RETURN;
    END IF;
    RAISE EXCEPTION 'conversation not found' USING ERRCODE = 'P0002';
  END;
  INSERT INTO public.messages (conversation_id, user_id, role, content, sources, model, created_at)
  SELECT dst.id, src.user_id, m.role, m.content, m.sources, m.model, m.created_at
    FROM public.messages m WHERE m.conversation_id = src.id ORDER BY m.created_at, m.id;
  RETURN QUERY SELECT * FROM public.conversations c WHERE c.id = dst.id;
END
$$;
REVOKE ALL ON FUNCTION public.duplicate_conversation(uuid, uuid) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.duplicate_conversation(uuid, uuid) TO authenticated, service_role;
