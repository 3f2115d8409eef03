-- PharmGPT's system of record. Why each shape differs from the old app:
-- messages are rows (DESIGN D4), sessions store only a token hash (D3),
-- documents are keyed by the sha256 of their bytes and may belong to a
-- conversation or to the user's library (conversation_id NULL).

-- ---------------------------------------------------------------- helpers
CREATE OR REPLACE FUNCTION public.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  -- An explicit updated_at in the statement wins (the migration restores
  -- legacy times); otherwise every update stamps now().
  IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
    NEW.updated_at := now();
  END IF;
  RETURN NEW;
END
$$;

-- ---------------------------------------------------------------- users
CREATE TABLE public.users (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- 3-64 characters is the rule for new accounts (enforced by the service);
  -- the database admits the free-text names the legacy app allowed.
  username        text NOT NULL CHECK (char_length(username) BETWEEN 1 AND 128
                                       AND username !~ '[[:cntrl:]]'),
  password_hash   text NOT NULL CHECK (char_length(password_hash) BETWEEN 20 AND 200),
  password_scheme text NOT NULL DEFAULT 'bcrypt'
                  CHECK (password_scheme IN ('bcrypt', 'legacy_sha256')),
  password_salt   text CHECK (password_salt IS NULL OR char_length(password_salt) <= 128),
  legacy_user_id  text UNIQUE CHECK (legacy_user_id ~ '^[0-9a-f]{32}$'),
  email           text CHECK (email IS NULL OR (char_length(email) <= 254
                                                AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$')),
  is_admin        boolean NOT NULL DEFAULT false,
  is_active       boolean NOT NULL DEFAULT true,
  failed_logins   integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
  locked_until    timestamptz,
  last_login      timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (password_scheme <> 'legacy_sha256' OR password_salt IS NOT NULL)
);
CREATE UNIQUE INDEX users_username_lower_key ON public.users (lower(username));
CREATE TRIGGER users_touch BEFORE UPDATE ON public.users
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

-- ---------------------------------------------------------------- sessions
CREATE TABLE public.sessions (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash    text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  user_id       uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL,
  last_activity timestamptz NOT NULL DEFAULT now(),
  ip_address    inet,
  user_agent    text CHECK (char_length(user_agent) <= 512),
  revoked_at    timestamptz,
  CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user_idx ON public.sessions (user_id, created_at DESC);
CREATE INDEX sessions_expires_idx ON public.sessions (expires_at);

-- ---------------------------------------------------------------- conversations
CREATE TABLE public.conversations (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id       uuid NOT NULL DEFAULT auth.uid() REFERENCES public.users (id) ON DELETE CASCADE,
  title         text NOT NULL DEFAULT 'New chat' CHECK (char_length(title) BETWEEN 1 AND 200),
  model         text CHECK (char_length(model) <= 200),
  is_archived   boolean NOT NULL DEFAULT false,
  is_pinned     boolean NOT NULL DEFAULT false,
  message_count integer NOT NULL DEFAULT 0 CHECK (message_count >= 0),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  -- lets messages/documents reference (id, user_id) so a row can never point
  -- at another user's conversation, whoever writes it
  UNIQUE (id, user_id)
);
CREATE INDEX conversations_list_idx
  ON public.conversations (user_id, is_archived, is_pinned DESC, updated_at DESC);
CREATE TRIGGER conversations_touch BEFORE UPDATE ON public.conversations
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

-- ---------------------------------------------------------------- messages
CREATE TABLE public.messages (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id uuid NOT NULL,
  user_id         uuid NOT NULL DEFAULT auth.uid() REFERENCES public.users (id) ON DELETE CASCADE,
  role            text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
  content         text NOT NULL CHECK (char_length(content) <= 200000),
  sources         jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(sources) = 'array'),
  model           text CHECK (char_length(model) <= 200),
  created_at      timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (conversation_id, user_id)
    REFERENCES public.conversations (id, user_id) ON DELETE CASCADE
);
CREATE INDEX messages_conversation_idx ON public.messages (conversation_id, created_at, id);
CREATE INDEX messages_user_idx ON public.messages (user_id);

-- message_count and updated_at follow the rows, per statement so a bulk
-- insert of 10,000 messages updates its conversation once.
CREATE OR REPLACE FUNCTION public.messages_count_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  UPDATE public.conversations c
     SET message_count = c.message_count + n.cnt,
         updated_at = greatest(c.updated_at, n.last_at)
    FROM (SELECT conversation_id, count(*) AS cnt, max(created_at) AS last_at
            FROM new_rows GROUP BY conversation_id) n
   WHERE c.id = n.conversation_id;
  RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION public.messages_count_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  UPDATE public.conversations c
     SET message_count = greatest(c.message_count - n.cnt, 0),
         updated_at = c.updated_at
    FROM (SELECT conversation_id, count(*) AS cnt FROM old_rows GROUP BY conversation_id) n
   WHERE c.id = n.conversation_id;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.messages_count_insert(), public.messages_count_delete() FROM PUBLIC;
CREATE TRIGGER messages_count_ins AFTER INSERT ON public.messages
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION public.messages_count_insert();
CREATE TRIGGER messages_count_del AFTER DELETE ON public.messages
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION public.messages_count_delete();

-- ---------------------------------------------------------------- documents
CREATE TABLE public.documents (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id          uuid NOT NULL DEFAULT auth.uid() REFERENCES public.users (id) ON DELETE CASCADE,
  conversation_id  uuid,   -- NULL: the user's library, visible in every conversation
  sha256           text CHECK (sha256 ~ '^[0-9a-f]{64}$'),  -- NULL only for migrated chunks-only docs
  filename         text NOT NULL CHECK (char_length(filename) BETWEEN 1 AND 255),
  file_type        text NOT NULL CHECK (char_length(file_type) BETWEEN 1 AND 100),
  file_size        bigint CHECK (file_size >= 0),
  page_count       integer CHECK (page_count >= 0),
  chunk_count      integer NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
  status           text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
  processing_error text CHECK (char_length(processing_error) <= 2000),
  metadata         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
  legacy_hash      text CHECK (char_length(legacy_hash) <= 64),
  added_at         timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (conversation_id, user_id)
    REFERENCES public.conversations (id, user_id) ON DELETE CASCADE,
  CHECK (sha256 IS NOT NULL OR legacy_hash IS NOT NULL)
);
-- the same bytes once per scope (a conversation, or the library)
CREATE UNIQUE INDEX documents_scope_sha_key ON public.documents
  (user_id, coalesce(conversation_id, '00000000-0000-0000-0000-000000000000'::uuid), sha256)
  WHERE sha256 IS NOT NULL;
CREATE UNIQUE INDEX documents_legacy_key ON public.documents
  (user_id, coalesce(conversation_id, '00000000-0000-0000-0000-000000000000'::uuid), legacy_hash)
  WHERE legacy_hash IS NOT NULL;
CREATE INDEX documents_conversation_idx ON public.documents (conversation_id, added_at DESC);
CREATE INDEX documents_library_idx ON public.documents (user_id, added_at DESC)
  WHERE conversation_id IS NULL;
CREATE INDEX documents_status_idx ON public.documents (status) WHERE status IN ('pending', 'processing');
CREATE TRIGGER documents_touch BEFORE UPDATE ON public.documents
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

-- ---------------------------------------------------------------- uploads
CREATE TABLE public.uploads (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         uuid NOT NULL DEFAULT auth.uid() REFERENCES public.users (id) ON DELETE CASCADE,
  document_id     uuid REFERENCES public.documents (id) ON DELETE SET NULL,
  conversation_id uuid REFERENCES public.conversations (id) ON DELETE SET NULL,
  filename        text NOT NULL CHECK (char_length(filename) BETWEEN 1 AND 255),
  file_type       text CHECK (char_length(file_type) <= 100),
  file_size       bigint NOT NULL CHECK (file_size >= 0),
  sha256          text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  outcome         text NOT NULL DEFAULT 'accepted'
                  CHECK (outcome IN ('accepted', 'duplicate', 'rejected', 'migrated')),
  uploaded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_user_idx ON public.uploads (user_id, uploaded_at DESC);
CREATE INDEX uploads_document_idx ON public.uploads (document_id);
CREATE INDEX uploads_conversation_idx ON public.uploads (conversation_id);

-- ---------------------------------------------------------------- preferences
CREATE TABLE public.user_preferences (
  user_id    uuid NOT NULL DEFAULT auth.uid() REFERENCES public.users (id) ON DELETE CASCADE,
  key        text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_.]{0,63}$'),
  value      jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, key),
  CHECK (octet_length(value::text) <= 65536)
);
CREATE TRIGGER user_preferences_touch BEFORE UPDATE ON public.user_preferences
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

-- ---------------------------------------------------------------- audit log
-- No foreign key: entries outlive the user they describe.
CREATE TABLE public.audit_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id     uuid,
  actor_id    uuid,
  action      text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,63}$'),
  target_type text CHECK (char_length(target_type) <= 64),
  target_id   text CHECK (char_length(target_id) <= 200),
  details     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
  ip_address  inet,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_user_idx ON public.audit_log (user_id, created_at DESC);
CREATE INDEX audit_log_action_idx ON public.audit_log (action, created_at DESC);

CREATE OR REPLACE FUNCTION public.audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'P0001',
    HINT = 'entries can be added, never changed or removed';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON public.audit_log
  FOR EACH ROW EXECUTE FUNCTION public.audit_log_append_only();

-- ---------------------------------------------------------------- ingest queue
CREATE TABLE public.ingest_jobs (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  document_id  uuid NOT NULL REFERENCES public.documents (id) ON DELETE CASCADE,
  user_id      uuid NOT NULL DEFAULT auth.uid() REFERENCES public.users (id) ON DELETE CASCADE,
  status       text NOT NULL DEFAULT 'queued'
               CHECK (status IN ('queued', 'running', 'done', 'failed')),
  attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 20),
  progress     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(progress) = 'object'),
  last_error   text CHECK (char_length(last_error) <= 2000),
  locked_by    text CHECK (char_length(locked_by) <= 200),
  locked_at    timestamptz,
  run_after    timestamptz NOT NULL DEFAULT now(),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
-- at most one live job per document
CREATE UNIQUE INDEX ingest_jobs_live_key ON public.ingest_jobs (document_id)
  WHERE status IN ('queued', 'running');
CREATE INDEX ingest_jobs_ready_idx ON public.ingest_jobs (run_after) WHERE status = 'queued';
CREATE INDEX ingest_jobs_user_idx ON public.ingest_jobs (user_id, created_at DESC);
CREATE TRIGGER ingest_jobs_touch BEFORE UPDATE ON public.ingest_jobs
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
