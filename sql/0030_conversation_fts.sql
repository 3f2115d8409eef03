-- Full-text conversation search (issue 14). Words are matched by stem through a
-- generated tsvector (English config) with a GIN index, so "dosing" finds
-- "dose" and a common word costs an index lookup, not a scan; results are
-- ranked by ts_rank and the best message's snippet is highlighted by
-- ts_headline. Trigram substring matching (sql/0007) is kept for what stems
-- cannot find: tokens with digits or symbols (drug codes, "#12345", "5mg",
-- "100%") and, after the ranked hits, partial words ("statin" in
-- "atorvastatin"). No superuser needed: plain columns, indexes and a
-- SECURITY INVOKER function, so RLS applies to the caller.

ALTER TABLE public.messages
  ADD COLUMN IF NOT EXISTS content_tsv tsvector
  GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED;
CREATE INDEX IF NOT EXISTS messages_content_tsv_idx ON public.messages USING gin (content_tsv);
-- titles are short: an expression index, so the conversations row (and every
-- `SELECT *` of it) keeps its shape
CREATE INDEX IF NOT EXISTS conversations_title_tsv_idx
  ON public.conversations USING gin (to_tsvector('english'::regconfig, title));

-- One row per matching conversation of the caller's: ranked full-text hits
-- first (rank > 0), then substring-only hits (rank 0) newest first. `snippet`
-- is plain text with the matched words between U+E000 and U+E001 (private-use
-- characters no message contains after the app escapes it); the caller
-- escapes the text and turns the markers into highlighting.
CREATE OR REPLACE FUNCTION public.search_conversation_hits(query text, max_results integer DEFAULT 20)
RETURNS TABLE (id uuid, user_id uuid, title text, model text, is_archived boolean, is_pinned boolean,
               message_count integer, created_at timestamptz, updated_at timestamptz,
               rank real, snippet text, message_id uuid)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
  uid uuid := auth.uid();
  lim integer := least(greatest(coalesce(max_results, 20), 1), 200);
  words text;
  frags text[];
  partial text[];
  needle text;
  tsq tsquery;
  has_words boolean;
  opts constant text := 'StartSel=' || chr(57344) || ', StopSel=' || chr(57345)
                        || ', MaxWords=20, MinWords=8, MaxFragments=2, FragmentDelimiter=" … "';
BEGIN
  IF uid IS NULL OR query IS NULL OR btrim(query) = '' THEN
    RETURN;
  END IF;
  -- a token with anything but letters, apostrophes, quotes or hyphens is a fragment
  SELECT string_agg(t, ' ') FILTER (WHERE t !~ '[^[:alpha:]''"-]'),
         coalesce(array_agg(p) FILTER (WHERE t ~ '[^[:alpha:]''"-]'), '{}'),
         coalesce(array_agg(p) FILTER (WHERE btrim(t, '"-') <> ''), '{}')
    INTO words, frags, partial
    FROM (SELECT t, '%' || replace(replace(replace(lower(btrim(t, '"')), '\', '\\'), '%', '\%'), '_', '\_')
                    || '%' AS p
            FROM regexp_split_to_table(btrim(query), '\s+') AS t) s;
  SELECT lower(btrim(t, '"')) INTO needle
    FROM regexp_split_to_table(btrim(query), '\s+') AS t
   WHERE btrim(t, '"-') <> '' ORDER BY (t ~ '[^[:alpha:]''"-]') DESC, length(t) DESC LIMIT 1;
  tsq := websearch_to_tsquery('english', coalesce(words, ''));
  has_words := numnode(tsq) > 0;

  RETURN QUERY
  WITH ranked AS (
    -- every word by stem (the GIN index), every fragment as a substring
    SELECT m.conversation_id AS cid, m.id AS mid, ts_rank(m.content_tsv, tsq) AS r
      FROM public.messages m
     WHERE has_words AND m.user_id = uid AND m.content_tsv @@ tsq
       AND m.content ILIKE ALL (frags)
    UNION ALL
    SELECT c.id, NULL::uuid, ts_rank(to_tsvector('english'::regconfig, c.title), tsq) * 2
      FROM public.conversations c
     WHERE has_words AND c.user_id = uid AND to_tsvector('english'::regconfig, c.title) @@ tsq AND c.title ILIKE ALL (frags)
  ),
  best AS (
    -- a conversation ranks by its best match; its best message gives the snippet
    SELECT DISTINCT ON (cid) cid, mid, max(r) OVER (PARTITION BY cid) AS r
      FROM ranked ORDER BY cid, mid IS NULL, r DESC
  ),
  top_ranked AS (
    SELECT b.cid, b.mid, b.r FROM best b JOIN public.conversations c ON c.id = b.cid
     ORDER BY b.r DESC, c.updated_at DESC LIMIT lim
  ),
  substring_hits AS (
    -- no word to stem (fragments only), or fewer ranked hits than asked for: substrings
    SELECT DISTINCT ON (m.conversation_id) m.conversation_id AS cid, m.id AS mid
      FROM public.messages m
     WHERE m.user_id = uid AND cardinality(partial) > 0
       AND (NOT has_words OR (SELECT count(*) FROM top_ranked) < lim)
       AND m.content ILIKE ALL (partial)
       AND m.conversation_id NOT IN (SELECT cid FROM top_ranked)
     ORDER BY m.conversation_id, m.created_at DESC
  ),
  title_substring AS (
    SELECT c.id AS cid, NULL::uuid AS mid
      FROM public.conversations c
     WHERE c.user_id = uid AND cardinality(partial) > 0
       AND (NOT has_words OR (SELECT count(*) FROM top_ranked) < lim)
       AND c.title ILIKE ALL (partial)
       AND c.id NOT IN (SELECT cid FROM top_ranked) AND c.id NOT IN (SELECT cid FROM substring_hits)
  ),
  picked AS (
    SELECT t.cid, t.mid, t.r FROM top_ranked t
    UNION ALL
    SELECT * FROM (
      SELECT u.cid, u.mid, 0::real AS r
        FROM (SELECT * FROM substring_hits UNION ALL SELECT * FROM title_substring) u
        JOIN public.conversations c ON c.id = u.cid
       ORDER BY c.updated_at DESC LIMIT lim) s
  )
  SELECT c.id, c.user_id, c.title, c.model, c.is_archived, c.is_pinned, c.message_count, c.created_at,
         c.updated_at, p.r::real,
         CASE
           WHEN p.mid IS NULL THEN NULL
           WHEN p.r > 0 THEN ts_headline('english', left(m.content, 20000), tsq, opts)
           ELSE (SELECT CASE WHEN x.pos = 0 THEN left(m.content, 200)
                             ELSE CASE WHEN x.pos > 61 THEN '… ' ELSE '' END
                                  || substr(m.content, greatest(x.pos - 60, 1), least(x.pos, 61) - 1)
                                  || chr(57344) || substr(m.content, x.pos, length(needle)) || chr(57345)
                                  || substr(m.content, x.pos + length(needle), 140) END
                   FROM (SELECT strpos(lower(m.content), needle) AS pos) x)
         END,
         p.mid
    FROM (SELECT * FROM picked ORDER BY r DESC LIMIT lim) p
    JOIN public.conversations c ON c.id = p.cid AND c.user_id = uid
    LEFT JOIN public.messages m ON m.id = p.mid AND m.user_id = uid
   ORDER BY p.r DESC, c.updated_at DESC;
END
$$;
REVOKE ALL ON FUNCTION public.search_conversation_hits(text, integer) FROM PUBLIC;
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    REVOKE ALL ON FUNCTION public.search_conversation_hits(text, integer) FROM anon;
  END IF;
END $$;
GRANT EXECUTE ON FUNCTION public.search_conversation_hits(text, integer) TO authenticated;

-- The older RPC keeps its signature (SETOF conversations) and now answers from
-- the same full-text search, in rank order.
CREATE OR REPLACE FUNCTION public.search_conversations(query text, max_results integer DEFAULT 20)
RETURNS SETOF public.conversations
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog, public AS $$
  SELECT c.*
    FROM public.search_conversation_hits(query, max_results) h
    JOIN public.conversations c ON c.id = h.id
   ORDER BY h.rank DESC, c.updated_at DESC
$$;
