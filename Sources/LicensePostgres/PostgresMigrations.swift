/// Versioned schema changes for Postgres, applied in order, each in its own transaction under an
/// advisory lock (so replicas starting together do not race). Never edit a shipped migration:
/// add a new one.
enum PostgresMigrations {
    /// The lock key `pg_advisory_xact_lock` takes while migrating ("CODITECT" in ASCII).
    static let lockKey: Int64 = 0x434F_4449_5445_4354

    /// The name of the NOTIFY channel that carries ids of changed licenses.
    static let licenseChannel = "coditect_license_changed"

    /// One schema change. `readableFrom` is the oldest schema version whose builds still run
    /// correctly once this change is applied: an additive change (a new nullable column, table or
    /// index that older builds never read) keeps the previous version's value, so an older daemon
    /// keeps serving through a rolling update and may restart on the newer schema; a change older
    /// builds cannot live with (a dropped or renamed column, a new NOT NULL column without a
    /// default) sets it to its own version. Changes that break are split across two releases
    /// (expand, then contract) so that consecutive releases always share a schema.
    struct Migration: Sendable {
        var version: Int
        var readableFrom: Int
        var statements: [String]

        init(_ version: Int, readableFrom: Int? = nil, _ statements: [String]) {
            self.version = version
            self.readableFrom = readableFrom ?? version
            self.statements = statements
        }
    }

    static let all: [Migration] = [
        Migration(1, [
            """
            CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL, status text NOT NULL,
              created_at_ms bigint NOT NULL)
            """,
            """
            CREATE TABLE licenses (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id),
              name text NOT NULL, seats bigint NOT NULL CHECK (seats > 0), lease_ttl_ms bigint NOT NULL,
              heartbeat_interval_ms bigint NOT NULL, offline_grace_ms bigint NOT NULL,
              valid_from_ms bigint, valid_until_ms bigint, features text[] NOT NULL, status text NOT NULL,
              created_at_ms bigint NOT NULL)
            """,
            "CREATE INDEX licenses_by_tenant ON licenses(tenant_id)",
            """
            CREATE TABLE users (id text PRIMARY KEY, tenant_id text REFERENCES tenants(id), name text NOT NULL,
              role text NOT NULL, disabled boolean NOT NULL DEFAULT false, created_at_ms bigint NOT NULL,
              CHECK ((role = 'operator') = (tenant_id IS NULL)))
            """,
            """
            CREATE TABLE api_keys (hash text PRIMARY KEY, user_id text NOT NULL REFERENCES users(id),
              tenant_id text REFERENCES tenants(id), created_at_ms bigint NOT NULL, revoked_at_ms bigint)
            """,
            """
            CREATE TABLE sessions (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id),
              license_id text NOT NULL REFERENCES licenses(id), user_id text NOT NULL REFERENCES users(id),
              hardware_id text NOT NULL, idempotency_key text NOT NULL, client_info jsonb NOT NULL,
              created_at_ms bigint NOT NULL, lease_expires_at_ms bigint NOT NULL, ended_at_ms bigint,
              end_reason text)
            """,
            "CREATE INDEX sessions_by_license ON sessions(license_id, created_at_ms DESC)",
            "CREATE INDEX sessions_live_by_license ON sessions(license_id) WHERE ended_at_ms IS NULL",
            """
            CREATE TABLE audit_log (seq bigserial PRIMARY KEY, id text NOT NULL UNIQUE, at_ms bigint NOT NULL,
              tenant_id text, actor text, action text NOT NULL, target text NOT NULL, outcome text NOT NULL)
            """,
            "CREATE INDEX audit_by_tenant ON audit_log(tenant_id, seq DESC)",
            // Row-level security: every statement sees only the rows of the tenant named by the
            // transaction's `coditect.tenant` setting ('*' for the daemon's own system work).
            // Unset means nothing is visible: the default fails closed.
            """
            CREATE FUNCTION coditect_visible(row_tenant text) RETURNS boolean LANGUAGE sql STABLE AS $$
              SELECT COALESCE(current_setting('coditect.tenant', true), '') = '*'
                  OR (row_tenant IS NOT NULL AND row_tenant = current_setting('coditect.tenant', true))
            $$
            """,
            "ALTER TABLE tenants ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE tenants FORCE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_isolation ON tenants USING (coditect_visible(id)) WITH CHECK (coditect_visible(id))",
            "ALTER TABLE licenses ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE licenses FORCE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_isolation ON licenses USING (coditect_visible(tenant_id)) WITH CHECK (coditect_visible(tenant_id))",
            "ALTER TABLE users ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE users FORCE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_isolation ON users USING (coditect_visible(tenant_id)) WITH CHECK (coditect_visible(tenant_id))",
            "ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE api_keys FORCE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_isolation ON api_keys USING (coditect_visible(tenant_id)) WITH CHECK (coditect_visible(tenant_id))",
            "ALTER TABLE sessions ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE sessions FORCE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_isolation ON sessions USING (coditect_visible(tenant_id)) WITH CHECK (coditect_visible(tenant_id))",
            "ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE audit_log FORCE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_isolation ON audit_log USING (coditect_visible(tenant_id)) WITH CHECK (coditect_visible(tenant_id))",
            // Every change to a license tells every daemon to drop its cached copy.
            """
            CREATE FUNCTION coditect_license_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('\(licenseChannel)', OLD.id);
              ELSE
                PERFORM pg_notify('\(licenseChannel)', NEW.id);
              END IF;
              RETURN NULL;
            END
            $$
            """,
            """
            CREATE TRIGGER license_changed AFTER INSERT OR UPDATE OR DELETE ON licenses
              FOR EACH ROW EXECUTE FUNCTION coditect_license_changed()
            """,
        ]),
        Migration(2, [
            "ALTER TABLE tenants ADD COLUMN provisioning text NOT NULL DEFAULT 'admin'",
            "ALTER TABLE tenants ADD COLUMN email_domains text[] NOT NULL DEFAULT '{}'",
            "ALTER TABLE tenants ADD COLUMN identity_tenant text",
            "CREATE INDEX tenants_by_identity_tenant ON tenants(identity_tenant) WHERE identity_tenant IS NOT NULL",
            "CREATE INDEX tenants_by_email_domain ON tenants USING gin (email_domains)",
            "ALTER TABLE users ADD COLUMN email text",
            "ALTER TABLE users ADD COLUMN identity_issuer text",
            "ALTER TABLE users ADD COLUMN identity_subject text",
            "CREATE UNIQUE INDEX users_by_identity ON users(identity_issuer, identity_subject) WHERE identity_subject IS NOT NULL",
            "CREATE INDEX users_by_email ON users(email) WHERE email IS NOT NULL",
            "ALTER TABLE api_keys ADD COLUMN id text",
            "ALTER TABLE api_keys ADD COLUMN name text NOT NULL DEFAULT ''",
            "UPDATE api_keys SET id = 'key_' || substr(hash, 1, 16)",
            "ALTER TABLE api_keys ALTER COLUMN id SET NOT NULL",
            "CREATE UNIQUE INDEX api_keys_by_id ON api_keys(id)",
            "CREATE INDEX api_keys_by_user ON api_keys(user_id)",
            "CREATE INDEX sessions_by_user ON sessions(user_id, created_at_ms DESC)",
            "CREATE INDEX audit_by_actor ON audit_log(actor, seq DESC)",
            """
            CREATE TABLE signing_keys (kid text PRIMARY KEY, algorithm text NOT NULL, private_pem text NOT NULL,
              created_at_ms bigint NOT NULL, retired_at_ms bigint, publish_until_ms bigint)
            """,
            // Only the daemon's own work ('*') sees signing keys: never a tenant-scoped statement.
            "ALTER TABLE signing_keys ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE signing_keys FORCE ROW LEVEL SECURITY",
            "CREATE POLICY system_only ON signing_keys USING (coditect_visible(NULL)) WITH CHECK (coditect_visible(NULL))",
        ]),
        Migration(3, [
            // Refused sign-ins are recorded as one row per address and interval, with their count.
            "ALTER TABLE audit_log ADD COLUMN count integer NOT NULL DEFAULT 1",
        ]),
    ]
}
