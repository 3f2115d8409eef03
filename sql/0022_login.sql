-- Sign-in against parallel guessing and look-alike names (issue 12, M2/L4).

-- The folded form of a username (NFKC, then Unicode case folding) is what makes two
-- names the same account. The service computes it with Python's casefold(), which
-- folds every script (lower() under the C locale folds ASCII only); other writers
-- (the migration, tests) that leave it out get lower(normalize(..., NFKC)).
ALTER TABLE public.users ADD COLUMN IF NOT EXISTS username_key text
  CHECK (char_length(username_key) BETWEEN 1 AND 300);

CREATE OR REPLACE FUNCTION public.users_fill_username_key() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  IF NEW.username_key IS NULL
     OR (TG_OP = 'UPDATE' AND NEW.username IS DISTINCT FROM OLD.username
         AND NEW.username_key IS NOT DISTINCT FROM OLD.username_key) THEN
    NEW.username_key := lower(normalize(NEW.username, NFKC));
  END IF;
  RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION public.users_fill_username_key() FROM PUBLIC, anon, authenticated;
DROP TRIGGER IF EXISTS users_username_key ON public.users;
CREATE TRIGGER users_username_key BEFORE INSERT OR UPDATE ON public.users
  FOR EACH ROW EXECUTE FUNCTION public.users_fill_username_key();

-- Existing accounts: the oldest keeps the plain key; a later one that folds to the same
-- name (possible only for legacy names) gets its id appended, so the index can be built.
UPDATE public.users u SET username_key = k.key
  FROM (SELECT id, CASE WHEN row_number() OVER (PARTITION BY lower(normalize(username, NFKC))
                                                ORDER BY created_at, id) = 1
                        THEN lower(normalize(username, NFKC))
                        ELSE lower(normalize(username, NFKC)) || '#' || id::text END AS key
          FROM public.users WHERE username_key IS NULL) k
 WHERE u.id = k.id;
ALTER TABLE public.users ALTER COLUMN username_key SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS users_username_key_key ON public.users (username_key);

CREATE OR REPLACE FUNCTION public.login_lookup(p_username text)
RETURNS SETOF public.users
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  SELECT * FROM public.users
   WHERE username_key IN (p_username, lower(normalize(p_username, NFKC)))
   ORDER BY username_key = p_username DESC
   LIMIT 1
$$;
REVOKE ALL ON FUNCTION public.login_lookup(text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.login_lookup(text) TO service_role;

-- Reserve one sign-in attempt before the password is checked, in one statement: it
-- refuses while the account is locked and otherwise counts the attempt, locking the
-- account when this attempt is the p_max_attempts-th since the last success within
-- p_window. Concurrent calls queue on the row lock, so 40 parallel guesses reserve
-- at most p_max_attempts checks. A success clears the count (record_login_success).
-- allowed = false with the account: locked; no row: no such account.
CREATE OR REPLACE FUNCTION public.reserve_login_attempt(
  p_username_key text, p_max_attempts integer, p_window interval, p_lock interval)
RETURNS TABLE (allowed boolean, account jsonb)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
  u public.users;
BEGIN
  -- one UPDATE: a concurrent attempt waits for the row lock, then re-checks the lock and
  -- recounts on the committed row (READ COMMITTED re-evaluation), so none is lost
  UPDATE public.users x SET
    failed_logins   = CASE WHEN x.first_failed_at IS NULL OR x.first_failed_at < now() - p_window
                                OR x.locked_until IS NOT NULL
                           THEN 1 ELSE x.failed_logins + 1 END,
    first_failed_at = CASE WHEN x.first_failed_at IS NULL OR x.first_failed_at < now() - p_window
                                OR x.locked_until IS NOT NULL
                           THEN now() ELSE x.first_failed_at END,
    locked_until    = CASE WHEN (CASE WHEN x.first_failed_at IS NULL OR x.first_failed_at < now() - p_window
                                           OR x.locked_until IS NOT NULL
                                      THEN 1 ELSE x.failed_logins + 1 END) >= p_max_attempts
                           THEN now() + p_lock ELSE NULL END
   WHERE x.username_key = p_username_key AND (x.locked_until IS NULL OR x.locked_until <= now())
  RETURNING x.* INTO u;
  IF FOUND THEN
    RETURN QUERY SELECT true, to_jsonb(u);
    RETURN;
  END IF;
  SELECT * INTO u FROM public.users y WHERE y.username_key = p_username_key;
  IF FOUND THEN
    RETURN QUERY SELECT false, to_jsonb(u);
  END IF;
END
$$;
REVOKE ALL ON FUNCTION public.reserve_login_attempt(text, integer, interval, interval)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.reserve_login_attempt(text, integer, interval, interval) TO service_role;
