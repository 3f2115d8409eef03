-- Row Level Security: Postgres, not app code, keeps users apart (DESIGN D2).
-- Every policy compares to auth.uid(); none is USING (true). anon gets no
-- table privileges at all. service_role (BYPASSRLS) is the only writer of
-- users, sessions and audit_log, and is what the auth services, the worker
-- and the migration use.

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC, anon, authenticated;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC, anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
GRANT ALL ON ALL TABLES IN SCHEMA public TO service_role;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO service_role;

ALTER TABLE public.users            ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sessions         ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.conversations    ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.messages         ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.documents        ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.uploads          ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.user_preferences ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_log        ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ingest_jobs      ENABLE ROW LEVEL SECURITY;

-- users: a user reads their own profile, never a password hash.
GRANT SELECT (id, username, email, is_admin, is_active, last_login, created_at, updated_at)
  ON public.users TO authenticated;
CREATE POLICY users_self_read ON public.users FOR SELECT TO authenticated
  USING (id = (SELECT auth.uid()));

-- sessions: a user lists their own sessions (devices), never a token hash.
GRANT SELECT (id, user_id, created_at, expires_at, last_activity, ip_address, user_agent, revoked_at)
  ON public.sessions TO authenticated;
CREATE POLICY sessions_self_read ON public.sessions FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- conversations
GRANT SELECT, DELETE ON public.conversations TO authenticated;
GRANT INSERT (id, user_id, title, model, is_archived, is_pinned, created_at)
  ON public.conversations TO authenticated;
GRANT UPDATE (title, model, is_archived, is_pinned) ON public.conversations TO authenticated;
CREATE POLICY conversations_owner_read ON public.conversations FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY conversations_owner_insert ON public.conversations FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY conversations_owner_update ON public.conversations FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY conversations_owner_delete ON public.conversations FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- messages: append-only for users (a retry re-sends the same id).
GRANT SELECT, DELETE ON public.messages TO authenticated;
GRANT INSERT (id, conversation_id, user_id, role, content, sources, model, created_at)
  ON public.messages TO authenticated;
CREATE POLICY messages_owner_read ON public.messages FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY messages_owner_insert ON public.messages FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY messages_owner_delete ON public.messages FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- documents: users register and remove; processing fields belong to the worker.
GRANT SELECT, DELETE ON public.documents TO authenticated;
GRANT INSERT (id, user_id, conversation_id, sha256, filename, file_type, file_size, metadata)
  ON public.documents TO authenticated;
GRANT UPDATE (filename, metadata) ON public.documents TO authenticated;
CREATE POLICY documents_owner_read ON public.documents FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY documents_owner_insert ON public.documents FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY documents_owner_update ON public.documents FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY documents_owner_delete ON public.documents FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- uploads: the history is written once and read back.
GRANT SELECT ON public.uploads TO authenticated;
GRANT INSERT (id, user_id, document_id, conversation_id, filename, file_type, file_size, sha256, outcome)
  ON public.uploads TO authenticated;
CREATE POLICY uploads_owner_read ON public.uploads FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY uploads_owner_insert ON public.uploads FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));

-- preferences
GRANT SELECT, INSERT, UPDATE, DELETE ON public.user_preferences TO authenticated;
CREATE POLICY prefs_owner_read ON public.user_preferences FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY prefs_owner_insert ON public.user_preferences FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY prefs_owner_update ON public.user_preferences FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
CREATE POLICY prefs_owner_delete ON public.user_preferences FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- audit log: a user may read what was recorded about them; only service_role writes.
GRANT SELECT ON public.audit_log TO authenticated;
CREATE POLICY audit_self_read ON public.audit_log FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- ingest jobs: a user queues work for their own documents and watches progress.
GRANT SELECT ON public.ingest_jobs TO authenticated;
GRANT INSERT (document_id, user_id) ON public.ingest_jobs TO authenticated;
CREATE POLICY ingest_jobs_owner_read ON public.ingest_jobs FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
CREATE POLICY ingest_jobs_owner_insert ON public.ingest_jobs FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid())
              AND EXISTS (SELECT 1 FROM public.documents d
                           WHERE d.id = document_id AND d.user_id = (SELECT auth.uid())));
