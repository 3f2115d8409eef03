-- Privileges that hold under Supabase's defaults (issue 11).
--
-- A Supabase project grants anon, authenticated and service_role ALL on every
-- table, function and sequence its `postgres` role creates in public (default
-- privileges), and PostgreSQL itself lets PUBLIC execute every new function.
-- Neither is what this schema means: each object's privileges are the ones the
-- file creating it grants, nothing more. This file makes that true for what
-- exists and for what later files create, on Supabase and on localbase alike.
-- It needs no superuser: it only changes objects the applying role owns, and
-- its own default privileges.
--
-- Consequence for later files: a new function is executable by nobody but its
-- owner, and a new table or sequence is readable by nobody, until the file
-- GRANTs it (functions used inside policies or by SECURITY INVOKER functions
-- included; extensions created later by this role too).

-- 1. Objects this role creates from now on get no privileges but the owner's.
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON FUNCTIONS FROM anon, authenticated, service_role;
-- PUBLIC's EXECUTE is a built-in default that only a default privilege for all
-- schemas can remove (the IN SCHEMA form in 0003 cannot).
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- 2. Functions: nobody but the owner, then exactly the callers each is for.
-- (Extension members are left alone: they are the extension's, not ours.)
DO $$
DECLARE
  f regprocedure;
  grants CONSTANT text[][] := ARRAY[
    -- a user's own data, through RLS (SECURITY INVOKER)
    ['public.search_conversations(text, integer)', 'authenticated, service_role'],
    ['public.append_message(uuid, uuid, text, text, jsonb, text, timestamptz)', 'authenticated, service_role'],
    ['public.duplicate_conversation(uuid, uuid)', 'authenticated, service_role'],
    ['public.register_document(uuid, uuid, text, text, text, bigint, jsonb)', 'authenticated'],
    ['public.register_document(uuid, uuid, uuid, text, text, jsonb)', 'authenticated'],
    -- the server: sign-in, the ingest worker, admin views, the migration
    ['public.login_lookup(text)', 'service_role'],
    ['public.record_login_failure(uuid, integer, interval, interval)', 'service_role'],
    ['public.record_login_success(uuid)', 'service_role'],
    ['public.reserve_login_attempt(text, integer, interval, interval)', 'service_role'],
    ['public.claim_ingest_job(text, interval)', 'service_role'],
    ['public.ingest_heartbeat(uuid, text)', 'service_role'],
    ['public.admin_user_overview(text, integer, integer)', 'service_role'],
    ['public.admin_usage(integer)', 'service_role'],
    ['public.migration_find_users(jsonb, jsonb)', 'service_role']];
  -- trigger functions (touch_updated_at, messages_count_*, audit_log_append_only,
  -- documents_require_upload_proof, users_fill_username_key) are for nobody
  i int;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace
       AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated, service_role', f);
  END LOOP;
  -- later files (0020-0023) may have been applied before this one on an existing
  -- database: grant what exists, and those files grant the same when they run after
  FOR i IN 1 .. array_length(grants, 1) LOOP
    IF to_regprocedure(grants[i][1]) IS NOT NULL THEN
      EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', grants[i][1], grants[i][2]);
    END IF;
  END LOOP;
END
$$;

-- 3. Sequences: identity columns need no privilege on their sequence to insert;
-- the server may read them, users may not.
DO $$
DECLARE
  s regclass;
BEGIN
  FOR s IN
    SELECT c.oid::regclass FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S'
       AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
  LOOP
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM PUBLIC, anon, authenticated, service_role', s);
    EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO service_role', s);
  END LOOP;
END
$$;

-- 4. The migration runner's bookkeeping is nobody's business but the owner's
-- (0003 granted service_role every table that existed then, this one included).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relname = 'schema_migrations'
                AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)) THEN
    REVOKE ALL ON public.schema_migrations FROM PUBLIC, anon, authenticated, service_role;
  END IF;
END
$$;
