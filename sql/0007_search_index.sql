-- Conversation search (titles and message text, substring, case-insensitive)
-- served by trigram indexes. pg_trgm ships with PostgreSQL's contrib and is
-- available on Supabase (in its `extensions` schema); without it the search
-- still works, by scanning.
DO $$
DECLARE
  ext_schema text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
    BEGIN
      IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'extensions') THEN
        CREATE EXTENSION pg_trgm WITH SCHEMA extensions;
      ELSE
        CREATE EXTENSION pg_trgm WITH SCHEMA public;
      END IF;
    EXCEPTION WHEN undefined_file OR feature_not_supported THEN
      RAISE NOTICE 'pg_trgm is not available: conversation search will scan';
      RETURN;
    END;
  END IF;
  SELECT n.nspname INTO ext_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
  EXECUTE format('CREATE INDEX IF NOT EXISTS messages_content_trgm_idx ON public.messages '
                 'USING gin (content %I.gin_trgm_ops)', ext_schema);
  EXECUTE format('CREATE INDEX IF NOT EXISTS conversations_title_trgm_idx ON public.conversations '
                 'USING gin (title %I.gin_trgm_ops)', ext_schema);
END
$$;

-- A semi-join the planner can serve from the trigram index, instead of a
-- per-conversation EXISTS over every message.
CREATE OR REPLACE FUNCTION public.search_conversations(query text, max_results integer DEFAULT 20)
RETURNS SETOF public.conversations
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  WITH pattern AS (
    SELECT '%' || replace(replace(replace(query, '\', '\\'), '%', '\%'), '_', '\_') || '%' AS p
  )
  SELECT c.*
    FROM public.conversations c, pattern
   WHERE c.user_id = auth.uid()
     AND (c.title ILIKE pattern.p
          OR c.id IN (SELECT m.conversation_id FROM public.messages m
                       WHERE m.user_id = auth.uid() AND m.content ILIKE pattern.p))
   ORDER BY c.is_pinned DESC, c.updated_at DESC
   LIMIT least(greatest(max_results, 1), 200)
$$;
