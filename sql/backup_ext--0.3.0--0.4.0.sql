-- backup_ext 0.3.0 -> 0.4.0.

--------------------------------------------------------------------------------------------------
-- The ETag of a backup in an S3 target, so that a restore can tell an object replaced behind
-- our back before it reads it.
ALTER TABLE backup_ext.artifacts ADD COLUMN etag text;

--------------------------------------------------------------------------------------------------
-- Directory-format backups in storage targets are uploaded file by file under <key>/: the key of
-- the file whose upload is open, for recovery.
ALTER TABLE backup_ext.artifacts ADD COLUMN upload_key text;

--------------------------------------------------------------------------------------------------
-- The open multipart upload of a running copy, so that one left by a crash is aborted.
ALTER TABLE backup_ext.backup_copies ADD COLUMN upload_id text;

--------------------------------------------------------------------------------------------------
-- Alerts: add_alert() / drop_alert() / test_alert(), the outbox the worker sends from, and the
-- events raised once per crossing. Superusers only (no grant).
CREATE TABLE backup_ext.alert_targets (
    name       text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('webhook', 'slack', 'discord', 'teams', 'email')),
    target     text NOT NULL,
    events     text[] NOT NULL,
    options    jsonb NOT NULL DEFAULT '{}',
    created_by name NOT NULL DEFAULT session_user,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE backup_ext.alert_deliveries (
    delivery_id  bigserial PRIMARY KEY,
    alert        text NOT NULL REFERENCES backup_ext.alert_targets ON DELETE CASCADE,
    event        text NOT NULL,
    payload      jsonb NOT NULL,
    attempts     int NOT NULL DEFAULT 0,
    next_try_at  timestamptz DEFAULT now(),
    delivered_at timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_deliveries_due_idx ON backup_ext.alert_deliveries (next_try_at)
    WHERE delivered_at IS NULL AND next_try_at IS NOT NULL;
CREATE INDEX alert_deliveries_alert_idx ON backup_ext.alert_deliveries (alert);
CREATE INDEX alert_deliveries_created_idx ON backup_ext.alert_deliveries (created_at);

CREATE TABLE backup_ext.alert_raised (
    event     text NOT NULL,
    subject   text NOT NULL,
    as_of     timestamptz,
    raised_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event, subject)
);

SELECT pg_catalog.pg_extension_config_dump('backup_ext.alert_targets', '');

CREATE VIEW backup_ext.alerts WITH (security_invoker = true) AS
SELECT a.name, a.kind, a.target, a.events, a.options, a.created_by, a.created_at,
       coalesce(d.pending, 0) AS pending, coalesce(d.given_up, 0) AS given_up,
       d.last_delivered_at, d.last_error
  FROM backup_ext.alert_targets a
  LEFT JOIN LATERAL (
      SELECT count(*) FILTER (WHERE x.next_try_at IS NOT NULL) AS pending,
             count(*) FILTER (WHERE x.next_try_at IS NULL AND x.delivered_at IS NULL) AS given_up,
             max(x.delivered_at) AS last_delivered_at,
             (array_agg(x.last_error ORDER BY x.created_at DESC)
                  FILTER (WHERE x.last_error IS NOT NULL AND x.delivered_at IS NULL))[1] AS last_error
        FROM backup_ext.alert_deliveries x
       WHERE x.alert = a.name) d ON true;
REVOKE ALL ON backup_ext.alert_targets, backup_ext.alert_deliveries, backup_ext.alert_raised,
              backup_ext.alerts FROM PUBLIC;

CREATE FUNCTION backup_ext."add_alert"(
	"name" TEXT, /* Option < String > */
	"kind" TEXT, /* Option < String > */
	"target" TEXT, /* Option < String > */
	"events" TEXT[] DEFAULT '{failed,stale,verify_failed}', /* :: std :: option :: Option < Vec < Option < String > > > */
	"options" jsonb DEFAULT '{}' /* Option < JsonB > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'add_alert_wrapper';
REVOKE ALL ON FUNCTION backup_ext.add_alert(text, text, text, text[], jsonb) FROM PUBLIC;

CREATE FUNCTION backup_ext."drop_alert"(
	"name" TEXT /* Option < String > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_alert_wrapper';
REVOKE ALL ON FUNCTION backup_ext.drop_alert(text) FROM PUBLIC;

CREATE FUNCTION backup_ext."test_alert"(
	"name" TEXT /* Option < String > */
) RETURNS TEXT /* String */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'test_alert_wrapper';
REVOKE ALL ON FUNCTION backup_ext.test_alert(text) FROM PUBLIC;
-- End of the alerts section.
