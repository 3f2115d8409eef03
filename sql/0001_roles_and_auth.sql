-- Roles and auth helpers the Supabase API expects. Everything here is created
-- only where missing, and granted only where missing, so this file applies
-- unchanged to a hosted Supabase project (where these already exist, owned by
-- other roles) and to localbase's embedded Postgres. It needs no superuser:
-- a role with CREATEROLE (Supabase's `postgres`) is enough.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN
    CREATE ROLE authenticator LOGIN NOINHERIT;
  END IF;
END
$$;

-- The gateway's login role switches to the three API roles. Granted only where
-- missing: on Supabase it is a member already, and granting a role this one did
-- not create needs ADMIN OPTION on PostgreSQL 16+.
DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF NOT pg_has_role('authenticator', r, 'MEMBER') THEN
      EXECUTE format('GRANT %I TO authenticator', r);
    END IF;
  END LOOP;
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') THEN
    CREATE SCHEMA auth;
  END IF;
END
$$;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'auth' AND p.proname = 'jwt') THEN
    EXECUTE $f$
      CREATE FUNCTION auth.jwt() RETURNS jsonb
      LANGUAGE sql STABLE AS
      $body$
        SELECT coalesce(
          nullif(current_setting('request.jwt.claim', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')
        )::jsonb
      $body$
    $f$;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'auth' AND p.proname = 'uid') THEN
    EXECUTE $f$
      CREATE FUNCTION auth.uid() RETURNS uuid
      LANGUAGE sql STABLE AS
      $body$
        SELECT coalesce(
          nullif(current_setting('request.jwt.claim.sub', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
        )::uuid
      $body$
    $f$;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'auth' AND p.proname = 'role') THEN
    EXECUTE $f$
      CREATE FUNCTION auth.role() RETURNS text
      LANGUAGE sql STABLE AS
      $body$
        SELECT coalesce(
          nullif(current_setting('request.jwt.claim.role', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
        )::text
      $body$
    $f$;
  END IF;
END
$$;

-- What the API roles need: USAGE on auth and public, EXECUTE on the helpers.
-- Granted where missing; a grant this role cannot give (the object belongs to
-- someone else) is an error naming what to ask its owner for, not a warning.
DO $$
DECLARE
  r text;
  obj text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    FOREACH obj IN ARRAY ARRAY['auth', 'public'] LOOP
      IF NOT has_schema_privilege(r, obj, 'USAGE') THEN
        IF NOT has_schema_privilege(current_user, obj, 'USAGE WITH GRANT OPTION') THEN
          RAISE EXCEPTION 'role % has no USAGE on schema %, and % may not grant it', r, obj, current_user
            USING HINT = format('ask the owner of schema %s to run: GRANT USAGE ON SCHEMA %s TO %s', obj, obj, r);
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', obj, r);
      END IF;
    END LOOP;
    FOREACH obj IN ARRAY ARRAY['auth.uid()', 'auth.role()', 'auth.jwt()'] LOOP
      IF NOT has_function_privilege(r, obj, 'EXECUTE') THEN
        IF NOT has_function_privilege(current_user, obj, 'EXECUTE WITH GRANT OPTION') THEN
          RAISE EXCEPTION 'role % may not execute %, and % may not grant it', r, obj, current_user
            USING HINT = format('ask the owner of %s to run: GRANT EXECUTE ON FUNCTION %s TO %s', obj, obj, r);
        END IF;
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', obj, r);
      END IF;
    END LOOP;
  END LOOP;
END
$$;
