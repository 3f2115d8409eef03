-- Deleting an account leaves its pharmacies whole (issue 15, review of 0070/0071).
-- Before a users row goes, for each pharmacy the account belongs to or uploaded to:
--   * no other member: the pharmacy is deleted, its documents with it (foreign keys);
--   * the account is its last owner: the longest-standing remaining member, editors
--     before readers, becomes owner (so the pharmacy keeps someone to manage it);
--   * the account's uploads there are handed to the pharmacy's earliest owner, with
--     their ingest jobs, so the shared library keeps them and a pending document is
--     still processed. The account's own upload-history rows go with the account, as
--     before; they are unlinked first, because they reference (document, uploader).
-- Chunks need no change: a shared document is indexed in its pharmacy's library
-- (rag/owner_scope.py), whoever uploaded it.
-- The service that deletes accounts (services/users.py) audits what this did.
-- SECURITY DEFINER, owned by postgres like the tables: it sees every member whoever
-- deletes the account; nobody may call it but the trigger.

CREATE OR REPLACE FUNCTION public.pharmacy_hand_over_on_account_deletion() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  ph uuid;
  heir uuid;
BEGIN
  FOR ph IN
    SELECT p.id FROM public.pharmacies p
     WHERE EXISTS (SELECT 1 FROM public.pharmacy_members m WHERE m.pharmacy_id = p.id AND m.user_id = OLD.id)
        OR EXISTS (SELECT 1 FROM public.documents d WHERE d.pharmacy_id = p.id AND d.user_id = OLD.id)
     ORDER BY p.id
       FOR NO KEY UPDATE  -- as the last-owner trigger does: one membership change at a time
  LOOP
    IF NOT EXISTS (SELECT 1 FROM public.pharmacy_members m
                    WHERE m.pharmacy_id = ph AND m.user_id <> OLD.id) THEN
      DELETE FROM public.pharmacies p WHERE p.id = ph;
      CONTINUE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.pharmacy_members m
                    WHERE m.pharmacy_id = ph AND m.role = 'owner' AND m.user_id <> OLD.id) THEN
      UPDATE public.pharmacy_members m SET role = 'owner'
       WHERE m.pharmacy_id = ph
         AND m.user_id = (SELECT x.user_id FROM public.pharmacy_members x
                           WHERE x.pharmacy_id = ph AND x.user_id <> OLD.id
                           ORDER BY CASE x.role WHEN 'editor' THEN 0 ELSE 1 END, x.created_at, x.user_id
                           LIMIT 1);
    END IF;
    SELECT m.user_id INTO heir FROM public.pharmacy_members m
     WHERE m.pharmacy_id = ph AND m.role = 'owner' AND m.user_id <> OLD.id
     ORDER BY m.created_at, m.user_id
     LIMIT 1;
    UPDATE public.uploads u SET document_id = NULL
     WHERE u.user_id = OLD.id
       AND u.document_id IN (SELECT d.id FROM public.documents d WHERE d.pharmacy_id = ph AND d.user_id = OLD.id);
    UPDATE public.ingest_jobs j SET user_id = heir
     WHERE j.document_id IN (SELECT d.id FROM public.documents d WHERE d.pharmacy_id = ph AND d.user_id = OLD.id);
    UPDATE public.documents d SET user_id = heir WHERE d.pharmacy_id = ph AND d.user_id = OLD.id;
  END LOOP;
  RETURN OLD;
END
$$;
REVOKE ALL ON FUNCTION public.pharmacy_hand_over_on_account_deletion()
  FROM PUBLIC, anon, authenticated, service_role;
DROP TRIGGER IF EXISTS users_hand_over_pharmacies ON public.users;
CREATE TRIGGER users_hand_over_pharmacies BEFORE DELETE ON public.users
  FOR EACH ROW EXECUTE FUNCTION public.pharmacy_hand_over_on_account_deletion();
