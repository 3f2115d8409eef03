-- Per-role statement timeouts, the values a Supabase project gives its API roles
-- (anon 3 s, authenticated 8 s; service_role none). The gateway reads each
-- claimed role's settings and applies them per request (SET LOCAL), as PostgREST
-- does, so one user's slow query is cancelled instead of holding a connection.
--
-- Set only where the role has no statement_timeout yet: a hosted project already
-- has these (and may have tuned them), and the applying role may not be allowed
-- to alter roles it did not create (PG16+ needs ADMIN OPTION); then this is a
-- notice, not an error.

DO $$
DECLARE
  wanted CONSTANT text[][] := ARRAY[['anon', '3s'], ['authenticated', '8s']];
  i int;
BEGIN
  FOR i IN 1 .. array_length(wanted, 1) LOOP
    IF NOT EXISTS (
      SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
       WHERE r.rolname = wanted[i][1] AND s.setdatabase = 0
         AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE 'statement_timeout=%'))
    THEN
      BEGIN
        EXECUTE format('ALTER ROLE %I SET statement_timeout = %L', wanted[i][1], wanted[i][2]);
      EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'statement_timeout of % left unset: % may not alter that role', wanted[i][1], current_user;
      END;
    END IF;
  END LOOP;
END
$$;
