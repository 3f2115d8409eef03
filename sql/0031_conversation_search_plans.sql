-- Conversation search served by its indexes (issue 14). Under RLS the planner may not use the
-- GIN indexes of sql/0007 and sql/0030 at all: `@@` and `ILIKE` are not leakproof, so they
-- cannot be evaluated before the policy's `user_id = auth.uid()`, and an index condition would
-- be evaluated first. Measured (EXPLAIN ANALYZE as `authenticated`): every search read the
-- caller's messages one by one, a sequential scan at 200,000 (85 ms for "#12345"), and a word
-- pair that never occurs together walked the whole history (49 ms).
--
-- So search_conversation_hits becomes SECURITY DEFINER (search_path pinned) and applies the
-- policy itself: every row it reads or returns has user_id = auth.uid(), the policies' own
-- test (sql/0003); with no caller (anon, service role) it returns nothing. Then:
--   * a word is looked for first among the caller's newest 5,000 messages (a newest-first
--     index walk that stops at 500 matches: a common word costs ~1,500 rows); with fewer
--     matches there, the GIN index finds its newest 500 matches in the whole history, so a rare
--     word, or words that never meet, cost their matches, not the history;
--   * a query of codes and fragments only ("#12345", "0155") takes the same two steps by
--     substring, the second through the trigram index: a fragment in a third of the messages
--     ("#1") no longer collects every one of them (150 ms at 200,000), only the newest 500;
--   * titles use their tsvector and trigram indexes;
--   * ts_headline still runs on the returned rows only (at most max_results).
-- Results, ranking and snippets are those of sql/0030.

CREATE OR REPLACE FUNCTION public.search_conversation_hits(query text, max_results integer DEFAULT 20)
RETURNS TABLE (id uuid, user_id uuid, title text, model text, is_archived boolean, is_pinned boolean,
               message_count integer, created_at timestamptz, updated_at timestamptz,
               rank real, snippet text, message_id uuid)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
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
  probe constant integer := 5000;  -- newest messages a word is looked for in before the GIN index
  recent constant integer := 5000;  -- messages searched for partial words, newest first
  tsq tsquery;
  has_words boolean;
  cids uuid[] := '{}';
  mids uuid[] := '{}';
  rs real[] := '{}';
  scids uuid[] := '{}';  -- substring hits of a query without words, newest first
  smids uuid[] := '{}';
  sts timestamptz[] := '{}';
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

  IF has_words THEN
    -- the newest matches among the newest `probe` messages: the walk stops at `cap` matches
    SELECT coalesce(array_agg(x.conversation_id), '{}'), coalesce(array_agg(x.id), '{}'),
           coalesce(array_agg(ts_rank(x.content_tsv, tsq)), '{}')
      INTO cids, mids, rs
      FROM (SELECT w.conversation_id, w.id, w.content_tsv
              FROM (SELECT m.conversation_id, m.id, m.content_tsv, m.content FROM public.messages m
                     WHERE m.user_id = uid ORDER BY m.created_at DESC LIMIT probe) w
             WHERE w.content_tsv @@ tsq AND w.content ILIKE ALL (frags)
             LIMIT cap) x;
    IF cardinality(mids) < cap THEN
      -- rare among the recent ones: the newest `cap` matches in the whole history, from the GIN
      -- index (MATERIALIZED: planned without the LIMIT, so not as a newest-first walk that a
      -- misestimate would send through every message)
      EXECUTE $q$
        WITH hit AS MATERIALIZED (
          SELECT m.conversation_id, m.id, m.created_at, m.content_tsv FROM public.messages m
           WHERE m.user_id = $1 AND m.content_tsv @@ $2 AND m.content ILIKE ALL ($3))
        SELECT coalesce(array_agg(h.conversation_id), '{}'), coalesce(array_agg(h.id), '{}'),
               coalesce(array_agg(ts_rank(h.content_tsv, $2)), '{}')
          FROM (SELECT * FROM hit ORDER BY created_at DESC LIMIT $4) h
      $q$ INTO cids, mids, rs USING uid, tsq, frags, cap;
    END IF;
  ELSIF needle IS NOT NULL THEN
    -- codes and fragments only: the same two steps, by substring (the longest token through
    -- the trigram index, then all of them)
    SELECT coalesce(array_agg(x.conversation_id), '{}'), coalesce(array_agg(x.id), '{}'),
           coalesce(array_agg(x.created_at), '{}')
      INTO scids, smids, sts
      FROM (SELECT w.conversation_id, w.id, w.created_at
              FROM (SELECT m.conversation_id, m.id, m.created_at, m.content FROM public.messages m
                     WHERE m.user_id = uid ORDER BY m.created_at DESC LIMIT probe) w
             WHERE w.content ILIKE needle_pattern AND w.content ILIKE ALL (partial)
             LIMIT cap) x;
    -- (a token with no three letters or digits in a row has no trigram to look up: it is looked
    -- for among the newest `probe` messages only, never by reading the whole history)
    IF cardinality(smids) < cap AND needle ~ '[[:alnum:]]{3}' THEN
      EXECUTE $q$
        WITH hit AS MATERIALIZED (
          SELECT m.conversation_id, m.id, m.created_at FROM public.messages m
           WHERE m.user_id = $1 AND m.content ILIKE $2 AND m.content ILIKE ALL ($3))
        SELECT coalesce(array_agg(h.conversation_id), '{}'), coalesce(array_agg(h.id), '{}'),
               coalesce(array_agg(h.created_at), '{}')
          FROM (SELECT * FROM hit ORDER BY created_at DESC LIMIT $4) h
      $q$ INTO scids, smids, sts USING uid, needle_pattern, partial, cap;
    END IF;
  END IF;

  -- EXECUTE: planned for these values (trigram index or not), where a cached generic plan cannot tell
  RETURN QUERY EXECUTE $q$
  WITH ranked AS (
    -- every word by stem, every fragment as a substring; ranked among the newest matches (cap)
    SELECT u.cid, u.mid, u.r FROM unnest($12::uuid[], $13::uuid[], $14::real[]) AS u(cid, mid, r)
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
    SELECT b.cid, b.mid, b.r FROM best b JOIN public.conversations c ON c.id = b.cid AND c.user_id = $1
     ORDER BY b.r DESC, c.updated_at DESC LIMIT $2
  ),
  substring_hits AS (
    -- no word to stem (fragments only: found above), or fewer ranked hits than asked for
    SELECT DISTINCT ON (s.conversation_id) s.conversation_id AS cid, s.id AS mid
      FROM (SELECT u.conversation_id, u.id, u.created_at
              FROM unnest($15::uuid[], $16::uuid[], $17::timestamptz[]) AS u(conversation_id, id, created_at)
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
        JOIN public.conversations c ON c.id = u.cid AND c.user_id = $1
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
  $q$ USING uid, lim, cap, tsq, has_words, frags, partial, needle_pattern, needle, opts, recent,
            cids, mids, rs, scids, smids, sts;
END
$$;
REVOKE ALL ON FUNCTION public.search_conversation_hits(text, integer) FROM PUBLIC;
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    REVOKE ALL ON FUNCTION public.search_conversation_hits(text, integer) FROM anon;
  END IF;
END $$;
GRANT EXECUTE ON FUNCTION public.search_conversation_hits(text, integer) TO authenticated;
