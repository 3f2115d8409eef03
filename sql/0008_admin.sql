-- Admin views (issue #5): the users overview with counts and usage per day.
-- Both are for service_role only (the AdminService checks that the acting
-- user is an admin before it calls them); no user token can execute them.

-- Usage per day scans messages by time, not by conversation.
CREATE INDEX IF NOT EXISTS messages_created_idx ON public.messages (created_at);

-- Every account with what the admin page needs, newest first. Message counts
-- come from conversations.message_count (kept by a trigger), not a scan.
CREATE OR REPLACE FUNCTION public.admin_user_overview(
  p_search text DEFAULT NULL, p_limit integer DEFAULT 200, p_offset integer DEFAULT 0)
RETURNS TABLE (id uuid, username text, email text, is_admin boolean, is_active boolean,
               failed_logins integer, locked_until timestamptz, last_login timestamptz,
               created_at timestamptz, conversations bigint, messages bigint, documents bigint,
               active_sessions bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  SELECT u.id, u.username, u.email, u.is_admin, u.is_active, u.failed_logins, u.locked_until,
         u.last_login, u.created_at,
         (SELECT count(*) FROM public.conversations c WHERE c.user_id = u.id),
         (SELECT coalesce(sum(c.message_count), 0)::bigint FROM public.conversations c WHERE c.user_id = u.id),
         (SELECT count(*) FROM public.documents d WHERE d.user_id = u.id),
         (SELECT count(*) FROM public.sessions s
           WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now())
    FROM public.users u
   WHERE p_search IS NULL OR p_search = ''
      OR u.username ILIKE '%' || replace(replace(replace(p_search, '\', '\\'), '%', '\%'), '_', '\_') || '%'
   ORDER BY u.created_at DESC, u.id
   LIMIT least(greatest(p_limit, 1), 1000) OFFSET greatest(p_offset, 0)
$$;

-- New users, conversations, messages and documents per UTC day for the last
-- p_days days (today included), one row per day even when nothing happened.
CREATE OR REPLACE FUNCTION public.admin_usage(p_days integer DEFAULT 30)
RETURNS TABLE (day date, users bigint, conversations bigint, messages bigint, documents bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  WITH bounds AS (
    SELECT (now() AT TIME ZONE 'UTC')::date - (least(greatest(p_days, 1), 366) - 1) AS first_day,
           (now() AT TIME ZONE 'UTC')::date AS last_day
  ), days AS (
    SELECT generate_series(b.first_day, b.last_day, interval '1 day')::date AS day FROM bounds b
  ), since AS (
    SELECT (b.first_day::timestamp AT TIME ZONE 'UTC') AS t FROM bounds b
  ), u AS (
    SELECT (x.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
      FROM public.users x, since WHERE x.created_at >= since.t GROUP BY 1
  ), c AS (
    SELECT (x.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
      FROM public.conversations x, since WHERE x.created_at >= since.t GROUP BY 1
  ), m AS (
    SELECT (x.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
      FROM public.messages x, since WHERE x.created_at >= since.t GROUP BY 1
  ), d AS (
    SELECT (x.added_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
      FROM public.documents x, since WHERE x.added_at >= since.t GROUP BY 1
  )
  SELECT days.day, coalesce(u.n, 0), coalesce(c.n, 0), coalesce(m.n, 0), coalesce(d.n, 0)
    FROM days
    LEFT JOIN u ON u.day = days.day
    LEFT JOIN c ON c.day = days.day
    LEFT JOIN m ON m.day = days.day
    LEFT JOIN d ON d.day = days.day
   ORDER BY days.day
$$;

REVOKE ALL ON FUNCTION public.admin_user_overview(text, integer, integer), public.admin_usage(integer)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.admin_user_overview(text, integer, integer), public.admin_usage(integer)
  TO service_role;
