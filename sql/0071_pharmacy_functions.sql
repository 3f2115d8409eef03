-- Pharmacy RPCs (issue 15). The three SECURITY DEFINER ones do what a member's
-- RLS cannot: create a pharmacy together with its first owner (a new pharmacy
-- has no member yet whose membership could admit the insert), resolve another
-- account's username for an owner, and show members their co-members' names
-- (users shows each user only their own row). Each checks the caller itself,
-- pins search_path, and never returns more than the member list of a pharmacy
-- the caller belongs to. Everything else runs as the caller, under RLS.

-- A new pharmacy, with the caller as its owner.
CREATE OR REPLACE FUNCTION public.create_pharmacy(p_name text)
RETURNS SETOF public.pharmacies
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  uid uuid := auth.uid();
  p public.pharmacies;
BEGIN
  IF uid IS NULL OR NOT EXISTS (SELECT 1 FROM public.users u WHERE u.id = uid AND u.is_active) THEN
    RAISE EXCEPTION 'sign in to create a pharmacy' USING ERRCODE = '42501';
  END IF;
  INSERT INTO public.pharmacies (name, created_by) VALUES (btrim(p_name), uid) RETURNING * INTO p;
  INSERT INTO public.pharmacy_members (pharmacy_id, user_id, role, added_by) VALUES (p.id, uid, 'owner', uid);
  RETURN NEXT p;
END
$$;

-- Add an account to a pharmacy by its username (the folded key the service computes,
-- as for sign-in), for an owner of that pharmacy. Not a member: "pharmacy not found",
-- as for one that does not exist; a member but not an owner: refused.
CREATE OR REPLACE FUNCTION public.add_pharmacy_member(p_pharmacy_id uuid, p_username_key text, p_role text)
RETURNS TABLE (pharmacy_id uuid, user_id uuid, username text, role text, added_by uuid, created_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
  uid uuid := auth.uid();
  mine text;
  target public.users;
  m public.pharmacy_members;
BEGIN
  SELECT x.role INTO mine FROM public.pharmacy_members x WHERE x.pharmacy_id = p_pharmacy_id AND x.user_id = uid;
  IF mine IS NULL THEN
    RAISE EXCEPTION 'pharmacy not found' USING ERRCODE = 'P0002';
  END IF;
  IF mine <> 'owner' THEN
    RAISE EXCEPTION 'only an owner can add members' USING ERRCODE = '42501';
  END IF;
  IF p_role IS NULL OR p_role NOT IN ('owner', 'editor', 'reader') THEN
    RAISE EXCEPTION 'unknown role' USING ERRCODE = '22023';
  END IF;
  SELECT * INTO target FROM public.users u
   WHERE u.username_key IN (p_username_key, lower(normalize(p_username_key, NFKC))) AND u.is_active
   ORDER BY u.username_key = p_username_key DESC
   LIMIT 1;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'account not found' USING ERRCODE = 'P0002';
  END IF;
  BEGIN
    INSERT INTO public.pharmacy_members AS x (pharmacy_id, user_id, role, added_by)
    VALUES (p_pharmacy_id, target.id, p_role, uid)
    RETURNING x.* INTO m;
  EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'already a member' USING ERRCODE = '23505';
  END;
  RETURN QUERY SELECT m.pharmacy_id, m.user_id, target.username, m.role, m.added_by, m.created_at;
END
$$;

-- The members of a pharmacy the caller belongs to, with their usernames (owners
-- first); nothing for anyone else.
CREATE OR REPLACE FUNCTION public.pharmacy_member_list(p_pharmacy_id uuid)
RETURNS TABLE (pharmacy_id uuid, user_id uuid, username text, role text, added_by uuid, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT m.pharmacy_id, m.user_id, u.username, m.role, m.added_by, m.created_at
    FROM public.pharmacy_members m JOIN public.users u ON u.id = m.user_id
   WHERE m.pharmacy_id = p_pharmacy_id
     AND EXISTS (SELECT 1 FROM public.pharmacy_members me
                  WHERE me.pharmacy_id = p_pharmacy_id AND me.user_id = auth.uid())
   ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'editor' THEN 1 ELSE 2 END, lower(u.username), m.user_id
$$;

-- Register an upload into a pharmacy's library (an editor's or an owner's), as
-- register_document does for a private one: the hash and size come from the
-- caller's own upload proof; the same bytes already in that pharmacy give back
-- the existing document. Runs as the caller: RLS admits the row only for an editor
-- or owner. The upload-history row links the document only when the caller owns
-- it (uploads reference (document, uploader)); a duplicate of a colleague's keeps none.
CREATE OR REPLACE FUNCTION public.register_pharmacy_document(
  p_id uuid, p_pharmacy_id uuid, p_upload_id uuid, p_filename text, p_file_type text,
  p_metadata jsonb DEFAULT '{}')
RETURNS TABLE (document jsonb, duplicate boolean)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
  uid uuid := auth.uid();
  mine text := public.pharmacy_role(p_pharmacy_id);
  proof public.upload_proofs;
  d public.documents;
  dup boolean := false;
BEGIN
  IF mine IS NULL THEN
    RAISE EXCEPTION 'pharmacy not found' USING ERRCODE = 'P0002';
  END IF;
  IF mine NOT IN ('owner', 'editor') THEN
    RAISE EXCEPTION 'readers cannot upload to this pharmacy' USING ERRCODE = '42501';
  END IF;
  SELECT * INTO proof FROM public.upload_proofs p WHERE p.id = p_upload_id AND p.user_id = uid;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'upload not found' USING ERRCODE = 'P0002', HINT = 'upload the file again';
  END IF;
  SELECT * INTO d FROM public.documents x WHERE x.pharmacy_id = p_pharmacy_id AND x.sha256 = proof.sha256;
  IF FOUND THEN
    dup := true;
  ELSE
    BEGIN
      INSERT INTO public.documents (id, user_id, pharmacy_id, sha256, filename, file_type, file_size, metadata)
      VALUES (p_id, uid, p_pharmacy_id, proof.sha256, p_filename, p_file_type, proof.file_size,
              coalesce(p_metadata, '{}'))
      RETURNING * INTO d;
    EXCEPTION WHEN unique_violation THEN  -- the same bytes registered concurrently
      SELECT * INTO d FROM public.documents x WHERE x.pharmacy_id = p_pharmacy_id AND x.sha256 = proof.sha256;
      dup := true;
    END;
    IF NOT dup THEN
      INSERT INTO public.ingest_jobs (document_id, user_id) VALUES (d.id, d.user_id);
    END IF;
  END IF;
  INSERT INTO public.uploads (user_id, document_id, filename, file_type, file_size, sha256, outcome)
  VALUES (uid, CASE WHEN d.user_id = uid THEN d.id END, p_filename, p_file_type, proof.file_size, proof.sha256,
          CASE WHEN dup THEN 'duplicate' ELSE 'accepted' END);
  RETURN QUERY SELECT to_jsonb(d), dup;
END
$$;

-- The private register_document, now that a pharmacy document of the caller's has
-- conversation_id NULL too: a library upload is a duplicate only of a library document.
CREATE OR REPLACE FUNCTION public.register_document(
  p_id uuid, p_conversation_id uuid, p_upload_id uuid, p_filename text, p_file_type text,
  p_metadata jsonb DEFAULT '{}')
RETURNS TABLE (document jsonb, duplicate boolean)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
  proof public.upload_proofs;
  d public.documents;
  dup boolean := false;
BEGIN
  SELECT * INTO proof FROM public.upload_proofs p WHERE p.id = p_upload_id AND p.user_id = auth.uid();
  IF NOT FOUND THEN
    RAISE EXCEPTION 'upload not found' USING ERRCODE = 'P0002',
      HINT = 'upload the file again';
  END IF;
  IF p_conversation_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM public.conversations c WHERE c.id = p_conversation_id) THEN
    RAISE EXCEPTION 'conversation not found' USING ERRCODE = 'P0002';
  END IF;
  SELECT * INTO d FROM public.documents x
   WHERE x.user_id = auth.uid() AND x.sha256 = proof.sha256 AND x.pharmacy_id IS NULL
     AND x.conversation_id IS NOT DISTINCT FROM p_conversation_id;
  IF FOUND THEN
    dup := true;
  ELSE
    BEGIN
      INSERT INTO public.documents (id, user_id, conversation_id, sha256, filename, file_type, file_size, metadata)
      VALUES (p_id, auth.uid(), p_conversation_id, proof.sha256, p_filename, p_file_type, proof.file_size,
              coalesce(p_metadata, '{}'))
      RETURNING * INTO d;
    EXCEPTION WHEN unique_violation THEN  -- the same bytes registered concurrently
      SELECT * INTO d FROM public.documents x
       WHERE x.user_id = auth.uid() AND x.sha256 = proof.sha256 AND x.pharmacy_id IS NULL
         AND x.conversation_id IS NOT DISTINCT FROM p_conversation_id;
      dup := true;
    END;
    IF NOT dup THEN
      INSERT INTO public.ingest_jobs (document_id, user_id) VALUES (d.id, d.user_id);
    END IF;
  END IF;
  INSERT INTO public.uploads (user_id, document_id, conversation_id, filename, file_type, file_size, sha256, outcome)
  VALUES (auth.uid(), d.id, p_conversation_id, p_filename, p_file_type, proof.file_size, proof.sha256,
          CASE WHEN dup THEN 'duplicate' ELSE 'accepted' END);
  RETURN QUERY SELECT to_jsonb(d), dup;
END
$$;

-- Admin views (service_role only; the AdminService checks the acting admin first).
CREATE OR REPLACE FUNCTION public.admin_pharmacy_overview(p_limit integer DEFAULT 200, p_offset integer DEFAULT 0)
RETURNS TABLE (id uuid, name text, created_by uuid, created_by_username text, created_at timestamptz,
               members bigint, owners bigint, documents bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  SELECT p.id, p.name, p.created_by, u.username, p.created_at,
         (SELECT count(*) FROM public.pharmacy_members m WHERE m.pharmacy_id = p.id),
         (SELECT count(*) FROM public.pharmacy_members m WHERE m.pharmacy_id = p.id AND m.role = 'owner'),
         (SELECT count(*) FROM public.documents d WHERE d.pharmacy_id = p.id)
    FROM public.pharmacies p LEFT JOIN public.users u ON u.id = p.created_by
   ORDER BY p.created_at DESC, p.id
   LIMIT least(greatest(p_limit, 1), 1000) OFFSET greatest(p_offset, 0)
$$;

CREATE OR REPLACE FUNCTION public.admin_pharmacy_members(p_pharmacy_id uuid)
RETURNS TABLE (pharmacy_id uuid, user_id uuid, username text, role text, added_by uuid, created_at timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  SELECT m.pharmacy_id, m.user_id, u.username, m.role, m.added_by, m.created_at
    FROM public.pharmacy_members m JOIN public.users u ON u.id = m.user_id
   WHERE m.pharmacy_id = p_pharmacy_id
   ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'editor' THEN 1 ELSE 2 END, lower(u.username), m.user_id
$$;

REVOKE ALL ON FUNCTION public.create_pharmacy(text), public.add_pharmacy_member(uuid, text, text),
  public.pharmacy_member_list(uuid),
  public.register_pharmacy_document(uuid, uuid, uuid, text, text, jsonb),
  public.register_document(uuid, uuid, uuid, text, text, jsonb),
  public.admin_pharmacy_overview(integer, integer), public.admin_pharmacy_members(uuid)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.create_pharmacy(text), public.add_pharmacy_member(uuid, text, text),
  public.pharmacy_member_list(uuid),
  public.register_pharmacy_document(uuid, uuid, uuid, text, text, jsonb),
  public.register_document(uuid, uuid, uuid, text, text, jsonb)
  TO authenticated;
GRANT EXECUTE ON FUNCTION public.admin_pharmacy_overview(integer, integer), public.admin_pharmacy_members(uuid)
  TO service_role;
