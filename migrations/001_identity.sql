-- tower-identity: tenants and their keys (PostgresProvider).
--
-- Rotation is a row insert (the new key) and an UPDATE of the old key's
-- not_after; revocation is an UPDATE of not_after (or a DELETE). Every change
-- sends NOTIFY identity_keys, '<tenant_id>' so that listening instances drop
-- their cached keys at once; others see it within the cache TTL.
-- The tenant '' serves requests that name no tenant.

CREATE TABLE IF NOT EXISTS identity_tenants (
    tenant_id  TEXT PRIMARY KEY,
    -- NULL: the layer's mode.
    mode       TEXT CHECK (mode IN ('off', 'report-only', 'optional', 'required')),
    -- The app id JWTs must carry as aud; NULL: not checked.
    audience   TEXT
);

CREATE TABLE IF NOT EXISTS identity_keys (
    tenant_id        TEXT NOT NULL REFERENCES identity_tenants (tenant_id) ON DELETE CASCADE,
    key_id           TEXT NOT NULL,
    scheme           TEXT NOT NULL CHECK (scheme IN ('hmac', 'timestamped_hmac', 'jwt')),
    -- The identifier an HMAC scheme signs (ignored for jwt).
    over             TEXT NOT NULL DEFAULT 'user_id' CHECK (over IN ('user_id', 'email', 'visitor_id')),
    -- Restrict who can read this column: it is the key material.
    secret           TEXT NOT NULL,
    secret_encoding  TEXT NOT NULL DEFAULT 'utf8' CHECK (secret_encoding IN ('utf8', 'hex', 'base64')),
    not_before       TIMESTAMPTZ,
    not_after        TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, key_id)
);

CREATE OR REPLACE FUNCTION identity_notify_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('identity_keys', OLD.tenant_id);
    ELSE
        PERFORM pg_notify('identity_keys', NEW.tenant_id);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS identity_keys_notify ON identity_keys;
CREATE TRIGGER identity_keys_notify AFTER INSERT OR UPDATE OR DELETE ON identity_keys
    FOR EACH ROW EXECUTE FUNCTION identity_notify_change();

DROP TRIGGER IF EXISTS identity_tenants_notify ON identity_tenants;
CREATE TRIGGER identity_tenants_notify AFTER INSERT OR UPDATE OR DELETE ON identity_tenants
    FOR EACH ROW EXECUTE FUNCTION identity_notify_change();
