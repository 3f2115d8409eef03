-- Full-text conversation search (issue 14). Words are matched by stem through a
-- generated tsvector (English config) with a GIN index, so "dosing" finds
-- "dose" and a common word costs an index lookup, not a scan; results are
-- ranked by ts_rank and the best message's snippet is highlighted by
-- ts_headline. Trigram substring matching (sql/0007) is kept for what stems
-- cannot find: tokens with digits or symbols (drug codes, "#12345", "5mg",
-- "100%") and, after too few ranked hits, partial words ("statin" in
-- "atorvastatin") within the newest 5,000 messages. No superuser needed: plain columns, indexes and a
-- SECURITY INVOKER function, so RLS applies to the caller.

ALTER TABLE public.messages
  ADD COLUMN IF NOT EXISTS content_tsv tsvector
  GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED;
CREATE INDEX IF NOT EXISTS messages_content_tsv_idx ON public.messages USING gin (content_tsv);
-- newest first per user: a word in most messages is served by walking this
-- index until enough matches are found, a rare one by the GIN index
CREATE INDEX IF NOT EXISTS messages_user_recent_idx ON public.messages (user_id, created_at DESC);
-- stored for titles too: an expression index alone leaves the planner
-- filtering a user's titles by computing to_tsvector for each (measured: most
-- of a search's time at 10,000 conversations)
ALTER TABLE public.conversations
  ADD COLUMN IF NOT EXISTS title_tsv tsvector
  GENERATED ALWAYS AS (to_tsvector('english'::regconfig, title)) STORED;
CREATE INDEX IF NOT EXISTS conversations_title_tsv_idx ON public.conversations USING gin (title_tsv);

-- One row per matching conversation of the caller's: ranked full-text hits
-- first (rank > 0), then substring-only hits (rank 0) newest first. Only the
-- newest 500 matching messages are ranked, so a word found in most of a long
-- history costs a bounded walk, not a rank of every message. `snippet`
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
  needle_pattern text;
  cap constant integer := 500;  -- matching messages ranked, newest first
  recent constant integer := 5000;  -- messages searched for partial words, newest first
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
  needle_pattern := '%' || replace(replace(replace(needle, '\', '\\'), '%', '\%'), '_', '\_') || '%';
  tsq := websearch_to_tsquery('english', coalesce(words, ''));
  has_words := numnode(tsq) > 0;

  -- EXECUTE: planned for these values (a word in most messages walks the newest-first
  -- index, a rare one the GIN index), where a cached generic plan cannot tell
  RETURN QUERY EXECUTE $q$
  WITH ranked AS (
    -- every word by stem, every fragment as a substring; ranked among the newest matches (cap)
    SELECT m.conversation_id AS cid, m.id AS mid, ts_rank(m.content_tsv, $4) AS r
      FROM (SELECT m.conversation_id, m.id, m.content_tsv FROM public.messages m
             WHERE $5 AND m.user_id = $1 AND m.content_tsv @@ $4
               AND m.content ILIKE ALL ($6)
             ORDER BY m.created_at DESC LIMIT $3) m
    UNION ALL
    SELECT c.id, NULL::uuid, ts_rank(c.title_tsv, $4) * 2
      FROM public.conversations c
     WHERE $5 AND c.user_id = $1 AND c.title_tsv @@ $4
       AND c.title ILIKE ALL ($6)
  ),
  best AS (
    -- a conversation ranks by its best match; its best message gives the snippet
    SELECT DISTINCT ON (cid) cid, mid, max(r) OVER (PARTITION BY cid) AS r
      FROM ranked ORDER BY cid, mid IS NULL, r DESC
  ),
  top_ranked AS (
    SELECT b.cid, b.mid, b.r FROM best b JOIN public.conversations c ON c.id = b.cid
     ORDER BY b.r DESC, c.updated_at DESC LIMIT $2
  ),
  substring_hits AS (
    -- no word to stem (fragments only), or fewer ranked hits than asked for: substrings
    -- (the longest token through the trigram index, then all of them)
    SELECT DISTINCT ON (s.conversation_id) s.conversation_id AS cid, s.id AS mid
      FROM (SELECT m.conversation_id, m.id, m.created_at FROM public.messages m
             WHERE NOT $5 AND m.user_id = $1 AND $9 IS NOT NULL
               AND m.content ILIKE $8 AND m.content ILIKE ALL ($7)
            UNION ALL
            -- partial words after too few ranked hits: the newest `recent` messages only, so a
            -- miss costs a bounded walk
            SELECT r.conversation_id, r.id, r.created_at
              FROM (SELECT m.conversation_id, m.id, m.created_at, m.content FROM public.messages m
                     WHERE $5 AND m.user_id = $1 AND $9 IS NOT NULL
                       AND (SELECT count(*) FROM top_ranked) < $2
                     ORDER BY m.created_at DESC LIMIT $11) r
             WHERE r.content ILIKE $8 AND r.content ILIKE ALL ($7)) s
     WHERE s.conversation_id NOT IN (SELECT cid FROM top_ranked)
     ORDER BY s.conversation_id, s.created_at DESC
  ),
  title_substring AS (
    SELECT c.id AS cid, NULL::uuid AS mid
      FROM public.conversations c
     WHERE c.user_id = $1 AND $9 IS NOT NULL
       AND (NOT $5 OR (SELECT count(*) FROM top_ranked) < $2)
       AND c.title ILIKE $8 AND c.title ILIKE ALL ($7)
       AND c.id NOT IN (SELECT cid FROM top_ranked) AND c.id NOT IN (SELECT cid FROM substring_hits)
  ),
  picked AS (
    SELECT t.cid, t.mid, t.r FROM top_ranked t
    UNION ALL
    SELECT * FROM (
      SELECT u.cid, u.mid, 0::real AS r
        FROM (SELECT * FROM substring_hits UNION ALL SELECT * FROM title_substring) u
        JOIN public.conversations c ON c.id = u.cid
       ORDER BY c.updated_at DESC LIMIT $2) s
  )
  SELECT c.id, c.user_id, c.title, c.model, c.is_archived, c.is_pinned, c.message_count, c.created_at,
         c.updated_at, p.r::real,
         CASE
           WHEN p.mid IS NULL THEN NULL
           WHEN p.r > 0 THEN ts_headline('english', left(m.content, 20000), $4, $10)
           ELSE (SELECT CASE WHEN x.pos = 0 THEN left(m.content, 200)
                             ELSE CASE WHEN x.pos > 61 THEN '… ' ELSE '' END
                                  || substr(m.content, greatest(x.pos - 60, 1), least(x.pos, 61) - 1)
                                  || chr(57344) || substr(m.content, x.pos, length($9)) || chr(57345)
                                  || substr(m.content, x.pos + length($9), 140) END
                   FROM (SELECT strpos(lower(m.content), $9) AS pos) x)
         END,
         p.mid
    FROM (SELECT * FROM picked ORDER BY r DESC LIMIT $2) p
    JOIN public.conversations c ON c.id = p.cid AND c.user_id = $1
    LEFT JOIN public.messages m ON m.id = p.mid AND m.user_id = $1
   ORDER BY p.r DESC, c.updated_at DESC
  $q$ USING uid, lim, cap, tsq, has_words, frags, partial, needle_pattern, needle, opts, recent;
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
