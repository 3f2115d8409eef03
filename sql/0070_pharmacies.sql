-- Pharmacy teams (issue 15): a pharmacy has members (owner, editor, reader)
-- who share a library of documents. A document belongs to exactly one scope:
-- its uploader's private library (conversation_id and pharmacy_id NULL), one of
-- the uploader's conversations, or one pharmacy's shared library. Postgres
-- decides who reaches a shared document, through membership, at every query:
-- removing a member (or leaving) takes effect on the next statement.
--
-- Privileges follow 0010: every new object starts with none but its owner's and
-- gets exactly the grants below, on Supabase and on localbase alike.

-- ---------------------------------------------------------------- tables
CREATE TABLE IF NOT EXISTS public.pharmacies (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name       text NOT NULL CHECK (char_length(btrim(name)) BETWEEN 1 AND 120 AND name !~ '[[:cntrl:]]'),
  -- who created it (kept for the admin page); ownership itself is a membership
  created_by uuid REFERENCES public.users (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
DROP TRIGGER IF EXISTS pharmacies_touch ON public.pharmacies;
CREATE TRIGGER pharmacies_touch BEFORE UPDATE ON public.pharmacies
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

CREATE TABLE IF NOT EXISTS public.pharmacy_members (
  pharmacy_id uuid NOT NULL REFERENCES public.pharmacies (id) ON DELETE CASCADE,
  user_id     uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
  role        text NOT NULL CHECK (role IN ('owner', 'editor', 'reader')),
  added_by    uuid DEFAULT auth.uid(),  -- no foreign key: kept after that account is gone
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pharmacy_id, user_id)
);
-- "my pharmacies" and every membership EXISTS in a policy: led by the member
CREATE INDEX IF NOT EXISTS pharmacy_members_user_idx ON public.pharmacy_members (user_id, pharmacy_id, role);

ALTER TABLE public.documents ADD COLUMN IF NOT EXISTS pharmacy_id uuid
  REFERENCES public.pharmacies (id) ON DELETE CASCADE;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'documents_one_scope') THEN
    ALTER TABLE public.documents ADD CONSTRAINT documents_one_scope
      CHECK (conversation_id IS NULL OR pharmacy_id IS NULL);
  END IF;
END
$$;
CREATE INDEX IF NOT EXISTS documents_pharmacy_idx ON public.documents (pharmacy_id, added_at DESC)
  WHERE pharmacy_id IS NOT NULL;
-- The same bytes once per scope: per uploader for a private library or a conversation
-- (pharmacy documents left out, or an editor could not keep a private copy too) ...
DROP INDEX IF EXISTS public.documents_scope_sha_key;
CREATE UNIQUE INDEX documents_scope_sha_key ON public.documents
  (user_id, coalesce(conversation_id, '00000000-0000-0000-0000-000000000000'::uuid), sha256)
  WHERE sha256 IS NOT NULL AND pharmacy_id IS NULL;
-- ... and once per pharmacy, whoever uploaded them
CREATE UNIQUE INDEX IF NOT EXISTS documents_pharmacy_sha_key ON public.documents (pharmacy_id, sha256)
  WHERE sha256 IS NOT NULL AND pharmacy_id IS NOT NULL;
DROP INDEX IF EXISTS public.documents_library_idx;
CREATE INDEX documents_library_idx ON public.documents (user_id, added_at DESC)
  WHERE conversation_id IS NULL AND pharmacy_id IS NULL;

-- ---------------------------------------------------------------- membership helper
-- The caller's role in a pharmacy, or NULL. SECURITY DEFINER because policies ON
-- pharmacy_members that look up pharmacy_members would recurse ("infinite recursion
-- detected in policy"): as the table's owner this one reads the table without RLS.
-- It answers only for auth.uid(), so it tells nobody anything about anyone else.
-- Policies on other tables (documents, pharmacies) use a plain EXISTS instead, which
-- the planner serves from the membership indexes.
CREATE OR REPLACE FUNCTION public.pharmacy_role(p_pharmacy_id uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT m.role FROM public.pharmacy_members m
   WHERE m.pharmacy_id = p_pharmacy_id AND m.user_id = auth.uid()
$$;
REVOKE ALL ON FUNCTION public.pharmacy_role(uuid) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.pharmacy_role(uuid) TO authenticated;

-- ---------------------------------------------------------------- last owner
-- A pharmacy always keeps an owner: demoting or removing the last one is refused.
-- The pharmacy row is locked first, so two owners demoting each other at once are
-- serialised and the second sees the first's change. Deleting the pharmacy itself
-- (its members go by cascade) and deleting an account are not refused.
-- SECURITY DEFINER: it must count owners the caller's RLS may not show.
CREATE OR REPLACE FUNCTION public.pharmacy_keep_an_owner() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  IF OLD.role <> 'owner' OR (TG_OP = 'UPDATE' AND NEW.role = 'owner') THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  PERFORM 1 FROM public.pharmacies p WHERE p.id = OLD.pharmacy_id FOR NO KEY UPDATE;
  IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM public.users u WHERE u.id = OLD.user_id) THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;  -- the pharmacy or the account is going
  END IF;
  IF NOT EXISTS (SELECT 1 FROM public.pharmacy_members m
                  WHERE m.pharmacy_id = OLD.pharmacy_id AND m.role = 'owner' AND m.user_id <> OLD.user_id) THEN
    RAISE EXCEPTION 'last owner: a pharmacy needs at least one owner' USING ERRCODE = 'P0001',
      HINT = 'make another member an owner first, or delete the pharmacy';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
REVOKE ALL ON FUNCTION public.pharmacy_keep_an_owner() FROM PUBLIC, anon, authenticated, service_role;
DROP TRIGGER IF EXISTS pharmacy_members_keep_owner ON public.pharmacy_members;
CREATE TRIGGER pharmacy_members_keep_owner BEFORE UPDATE OF role OR DELETE ON public.pharmacy_members
  FOR EACH ROW EXECUTE FUNCTION public.pharmacy_keep_an_owner();

-- ---------------------------------------------------------------- RLS and grants
ALTER TABLE public.pharmacies       ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.pharmacy_members ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.pharmacies, public.pharmacy_members FROM PUBLIC, anon, authenticated;
GRANT ALL ON public.pharmacies, public.pharmacy_members TO service_role;

-- pharmacies: members read; owners rename and delete. Created through
-- create_pharmacy() (0071), which makes the creator its first owner.
GRANT SELECT, DELETE ON public.pharmacies TO authenticated;
GRANT UPDATE (name) ON public.pharmacies TO authenticated;
DROP POLICY IF EXISTS pharmacies_member_read ON public.pharmacies;
CREATE POLICY pharmacies_member_read ON public.pharmacies FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM public.pharmacy_members m
                  WHERE m.pharmacy_id = pharmacies.id AND m.user_id = (SELECT auth.uid())));
DROP POLICY IF EXISTS pharmacies_owner_update ON public.pharmacies;
CREATE POLICY pharmacies_owner_update ON public.pharmacies FOR UPDATE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.pharmacy_members m
                  WHERE m.pharmacy_id = pharmacies.id AND m.user_id = (SELECT auth.uid()) AND m.role = 'owner'))
  WITH CHECK (EXISTS (SELECT 1 FROM public.pharmacy_members m
                       WHERE m.pharmacy_id = pharmacies.id AND m.user_id = (SELECT auth.uid())
                         AND m.role = 'owner'));
DROP POLICY IF EXISTS pharmacies_owner_delete ON public.pharmacies;
CREATE POLICY pharmacies_owner_delete ON public.pharmacies FOR DELETE TO authenticated
  USING (EXISTS (SELECT 1 FROM public.pharmacy_members m
                  WHERE m.pharmacy_id = pharmacies.id AND m.user_id = (SELECT auth.uid()) AND m.role = 'owner'));

-- pharmacy_members: a member sees the pharmacy's members; owners add, change and
-- remove members; anyone may remove themselves (leave). Adding by username goes
-- through add_pharmacy_member() (0071), which resolves the name for an owner.
GRANT SELECT, DELETE ON public.pharmacy_members TO authenticated;
GRANT INSERT (pharmacy_id, user_id, role, added_by) ON public.pharmacy_members TO authenticated;
GRANT UPDATE (role) ON public.pharmacy_members TO authenticated;
DROP POLICY IF EXISTS pharmacy_members_member_read ON public.pharmacy_members;
CREATE POLICY pharmacy_members_member_read ON public.pharmacy_members FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()) OR public.pharmacy_role(pharmacy_id) IS NOT NULL);
DROP POLICY IF EXISTS pharmacy_members_owner_insert ON public.pharmacy_members;
CREATE POLICY pharmacy_members_owner_insert ON public.pharmacy_members FOR INSERT TO authenticated
  WITH CHECK (public.pharmacy_role(pharmacy_id) = 'owner' AND added_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS pharmacy_members_owner_update ON public.pharmacy_members;
CREATE POLICY pharmacy_members_owner_update ON public.pharmacy_members FOR UPDATE TO authenticated
  USING (public.pharmacy_role(pharmacy_id) = 'owner')
  WITH CHECK (public.pharmacy_role(pharmacy_id) = 'owner');
DROP POLICY IF EXISTS pharmacy_members_owner_or_self_delete ON public.pharmacy_members;
CREATE POLICY pharmacy_members_owner_or_self_delete ON public.pharmacy_members FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()) OR public.pharmacy_role(pharmacy_id) = 'owner');

-- documents: the uploader's own policies (0003) now cover only private and
-- conversation documents; a pharmacy's documents are reached through membership
-- alone (so an uploader who leaves loses them too): every member reads, editors
-- and owners upload, rename and delete.
GRANT INSERT (pharmacy_id) ON public.documents TO authenticated;
ALTER POLICY documents_owner_read ON public.documents
  USING (user_id = (SELECT auth.uid()) AND pharmacy_id IS NULL);
ALTER POLICY documents_owner_insert ON public.documents
  WITH CHECK (user_id = (SELECT auth.uid()) AND pharmacy_id IS NULL);
ALTER POLICY documents_owner_update ON public.documents
  USING (user_id = (SELECT auth.uid()) AND pharmacy_id IS NULL)
  WITH CHECK (user_id = (SELECT auth.uid()) AND pharmacy_id IS NULL);
ALTER POLICY documents_owner_delete ON public.documents
  USING (user_id = (SELECT auth.uid()) AND pharmacy_id IS NULL);
DROP POLICY IF EXISTS documents_pharmacy_read ON public.documents;
CREATE POLICY documents_pharmacy_read ON public.documents FOR SELECT TO authenticated
  USING (pharmacy_id IS NOT NULL
         AND EXISTS (SELECT 1 FROM public.pharmacy_members m
                      WHERE m.pharmacy_id = documents.pharmacy_id AND m.user_id = (SELECT auth.uid())));
DROP POLICY IF EXISTS documents_pharmacy_insert ON public.documents;
CREATE POLICY documents_pharmacy_insert ON public.documents FOR INSERT TO authenticated
  WITH CHECK (pharmacy_id IS NOT NULL AND user_id = (SELECT auth.uid())
              AND EXISTS (SELECT 1 FROM public.pharmacy_members m
                           WHERE m.pharmacy_id = documents.pharmacy_id AND m.user_id = (SELECT auth.uid())
                             AND m.role IN ('owner', 'editor')));
DROP POLICY IF EXISTS documents_pharmacy_update ON public.documents;
CREATE POLICY documents_pharmacy_update ON public.documents FOR UPDATE TO authenticated
  USING (pharmacy_id IS NOT NULL
         AND EXISTS (SELECT 1 FROM public.pharmacy_members m
                      WHERE m.pharmacy_id = documents.pharmacy_id AND m.user_id = (SELECT auth.uid())
                        AND m.role IN ('owner', 'editor')))
  WITH CHECK (pharmacy_id IS NOT NULL
              AND EXISTS (SELECT 1 FROM public.pharmacy_members m
                           WHERE m.pharmacy_id = documents.pharmacy_id AND m.user_id = (SELECT auth.uid())
                             AND m.role IN ('owner', 'editor')));
DROP POLICY IF EXISTS documents_pharmacy_delete ON public.documents;
CREATE POLICY documents_pharmacy_delete ON public.documents FOR DELETE TO authenticated
  USING (pharmacy_id IS NOT NULL
         AND EXISTS (SELECT 1 FROM public.pharmacy_members m
                      WHERE m.pharmacy_id = documents.pharmacy_id AND m.user_id = (SELECT auth.uid())
                        AND m.role IN ('owner', 'editor')));

-- ingest jobs: a job is visible to whoever may see its document (the documents
-- policies run inside this EXISTS), so every member watches a shared document's
-- progress and a member who left no longer does, not even for their own uploads.
-- Queueing stays the uploader's, for a document they can still see.
ALTER POLICY ingest_jobs_owner_read ON public.ingest_jobs
  USING (EXISTS (SELECT 1 FROM public.documents d WHERE d.id = ingest_jobs.document_id));
