-- State of the legacy-data migration (issue #6): every run and every item it
-- touched, so a run killed at any point resumes to the same end state and a
-- rollback removes exactly what that run wrote. Only the migration (through
-- the service-role key) reads or writes these tables: RLS is on and there is
-- no policy at all, so no user token sees a row.

CREATE TABLE public.migration_runs (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  source             text NOT NULL CHECK (char_length(source) BETWEEN 1 AND 4096),
  source_fingerprint text NOT NULL CHECK (char_length(source_fingerprint) <= 128),
  state              text NOT NULL DEFAULT 'running'
                     CHECK (state IN ('running', 'completed', 'failed', 'rolled_back')),
  options            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
  counts             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(counts) = 'object'),
  problems           jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(problems) = 'array'),
  started_at         timestamptz NOT NULL DEFAULT now(),
  heartbeat_at       timestamptz NOT NULL DEFAULT now(),
  finished_at        timestamptz,
  rolled_back_at     timestamptz,
  error              text CHECK (char_length(error) <= 4000)
);
CREATE INDEX migration_runs_started_idx ON public.migration_runs (started_at DESC);

CREATE TABLE public.migration_items (
  id          uuid PRIMARY KEY,  -- UUIDv5 of (run, kind, legacy key): a resumed run finds its own items
  run_id      uuid NOT NULL REFERENCES public.migration_runs (id) ON DELETE CASCADE,
  kind        text NOT NULL
              CHECK (kind IN ('user', 'conversation', 'message_batch', 'document', 'chunk_batch', 'upload')),
  legacy_key  text NOT NULL CHECK (char_length(legacy_key) BETWEEN 1 AND 1000),
  target_ids  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(target_ids) = 'object'),
  checksum    text CHECK (char_length(checksum) <= 128),
  -- pending: claimed, the write may or may not have happened (the target did not exist when claimed,
  -- so whatever exists now under target_ids is this run's); done: written by this run; skipped: not
  -- written (already there, conflicting, or bad data: see error); rolled_back: removed again
  state       text NOT NULL DEFAULT 'pending'
              CHECK (state IN ('pending', 'done', 'skipped', 'failed', 'rolled_back')),
  error       text CHECK (char_length(error) <= 2000),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (run_id, kind, legacy_key)
);
CREATE INDEX migration_items_run_state_idx ON public.migration_items (run_id, kind, state);
CREATE INDEX migration_items_key_idx ON public.migration_items (kind, legacy_key) WHERE state = 'done';
CREATE TRIGGER migration_items_touch BEFORE UPDATE ON public.migration_items
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

ALTER TABLE public.migration_runs  ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.migration_items ENABLE ROW LEVEL SECURITY;
-- No policies: service_role bypasses RLS; nobody else has privileges either.
REVOKE ALL ON public.migration_runs, public.migration_items FROM PUBLIC, anon, authenticated;
GRANT ALL ON public.migration_runs, public.migration_items TO service_role;

-- Existing accounts that a batch of legacy users could collide with: by the
-- id the migration would give them, or by the same username in any case.
CREATE OR REPLACE FUNCTION public.migration_find_users(p_ids jsonb, p_usernames jsonb)
RETURNS TABLE (id uuid, username text, legacy_user_id text, password_scheme text)
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  SELECT u.id, u.username, u.legacy_user_id, u.password_scheme
    FROM public.users u
   WHERE u.id IN (SELECT (jsonb_array_elements_text(p_ids))::uuid)
      OR lower(u.username) IN (SELECT lower(jsonb_array_elements_text(p_usernames)))
$$;
REVOKE ALL ON FUNCTION public.migration_find_users(jsonb, jsonb) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.migration_find_users(jsonb, jsonb) TO service_role;
