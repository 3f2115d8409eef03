-- Functions the services call as one statement each, so each does its work in
-- one transaction and one round trip.

-- Login lockout: the window start is kept so "5 failures within 15 minutes" is
-- exact, and the counting is atomic across processes.
ALTER TABLE public.users ADD COLUMN IF NOT EXISTS first_failed_at timestamptz;

CREATE OR REPLACE FUNCTION public.login_lookup(p_username text)
RETURNS SETOF public.users
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$
  SELECT * FROM public.users WHERE lower(username) = lower(p_username)
$$;

CREATE OR REPLACE FUNCTION public.record_login_failure(
  p_user_id uuid, p_max_failures integer, p_window interval, p_lock interval)
RETURNS SETOF public.users
LANGUAGE sql VOLATILE SET search_path = pg_catalog, public AS $$
  UPDATE public.users u SET
    failed_logins   = CASE WHEN w.fresh THEN 1 ELSE u.failed_logins + 1 END,
    first_failed_at = CASE WHEN w.fresh THEN now() ELSE u.first_failed_at END,
    locked_until    = CASE WHEN (CASE WHEN w.fresh THEN 1 ELSE u.failed_logins + 1 END) >= p_max_failures
                           THEN now() + p_lock ELSE u.locked_until END
  FROM (SELECT id, (first_failed_at IS NULL OR first_failed_at < now() - p_window) AS fresh
          FROM public.users WHERE id = p_user_id FOR UPDATE) w
  WHERE u.id = w.id
  RETURNING u.*
$$;

CREATE OR REPLACE FUNCTION public.record_login_success(p_user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, public AS $$
  UPDATE public.users
     SET failed_logins = 0, first_failed_at = NULL, locked_until = NULL, last_login = now()
   WHERE id = p_user_id
$$;

REVOKE ALL ON FUNCTION public.login_lookup(text), public.record_login_failure(uuid, integer, interval, interval),
  public.record_login_success(uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.login_lookup(text), public.record_login_failure(uuid, integer, interval, interval),
  public.record_login_success(uuid) TO service_role;

-- Append a message, idempotently on its id, and name a "New chat" after its
-- first user message (50 characters, then an ellipsis), in one transaction.
-- Runs as the caller: RLS decides which conversation exists.
CREATE OR REPLACE FUNCTION public.append_message(
  p_id uuid, p_conversation_id uuid, p_role text, p_content text,
  p_sources jsonb DEFAULT '[]', p_model text DEFAULT NULL, p_created_at timestamptz DEFAULT NULL)
RETURNS TABLE (id uuid, conversation_id uuid, user_id uuid, role text, content text, sources jsonb,
               model text, created_at timestamptz, inserted boolean, conversation_title text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $$
#variable_conflict use_column
DECLARE
  conv public.conversations;
  m public.messages;
  was_inserted boolean := false;
BEGIN
  SELECT * INTO conv FROM public.conversations c WHERE c.id = p_conversation_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'conversation not found' USING ERRCODE = 'P0002';
  END IF;
  INSERT INTO public.messages AS x (id, conversation_id, user_id, role, content, sources, model, created_at)
  VALUES (p_id, p_conversation_id, conv.user_id, p_role, p_content, coalesce(p_sources, '[]'), p_model,
          coalesce(p_created_at, now()))
  ON CONFLICT ON CONSTRAINT messages_pkey DO NOTHING
  RETURNING x.* INTO m;
  IF FOUND THEN
    was_inserted := true;
  ELSE
    SELECT * INTO m FROM public.messages x WHERE x.id = p_id;
    IF NOT FOUND OR m.conversation_id <> p_conversation_id THEN
      RAISE EXCEPTION 'message id already used' USING ERRCODE = '23505';
    END IF;
  END IF;
  IF was_inserted AND p_role = 'user' AND conv.title = 'New chat' THEN
    UPDATE public.conversations c
       SET title = CASE WHEN char_length(btrim(p_content)) > 50
                        THEN left(regexp_replace(btrim(p_content), '\s+', ' ', 'g'), 50) || '…'
                        ELSE coalesce(nullif(regexp_replace(btrim(p_content), '\s+', ' ', 'g'), ''), 'New chat') END
     WHERE c.id = p_conversation_id
    RETURNING c.title INTO conv.title;
  END IF;
  RETURN QUERY SELECT m.id, m.conversation_id, m.user_id, m.role, m.content, m.sources, m.model, m.created_at,
                      was_inserted, conv.title;
END
$$;
REVOKE ALL ON FUNCTION public.append_message(uuid, uuid, text, text, jsonb, text, timestamptz) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.append_message(uuid, uuid, text, text, jsonb, text, timestamptz)
  TO authenticated, service_role;

-- Copy a conversation and its messages (new ids, same order and times).
CREATE OR REPLACE FUNCTION public.duplicate_conversation(p_id uuid, p_new_id uuid DEFAULT NULL)
RETURNS SETOF public.conversations
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public AS $$
DECLARE
  src public.conversations;
  dst public.conversations;
BEGIN
  SELECT * INTO src FROM public.conversations c WHERE c.id = p_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'conversation not found' USING ERRCODE = 'P0002';
  END IF;
  INSERT INTO public.conversations (id, user_id, title, model)
  VALUES (coalesce(p_new_id, gen_random_uuid()), src.user_id, left('Copy of ' || src.title, 200), src.model)
  RETURNING * INTO dst;
  INSERT INTO public.messages (conversation_id, user_id, role, content, sources, model, created_at)
  SELECT dst.id, src.user_id, m.role, m.content, m.sources, m.model, m.created_at
    FROM public.messages m WHERE m.conversation_id = src.id ORDER BY m.created_at, m.id;
  RETURN QUERY SELECT * FROM public.conversations c WHERE c.id = dst.id;
END
$$;
REVOKE ALL ON FUNCTION public.duplicate_conversation(uuid, uuid) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.duplicate_conversation(uuid, uuid) TO authenticated, service_role;
