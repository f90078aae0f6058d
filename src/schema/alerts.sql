-- Alerts (add_alert()): where messages about outcomes go. Options name files holding secrets
-- (secret_file, password_file), read when sending; no secret is ever stored here.
CREATE TABLE backup_ext.alert_targets (
    name       text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('webhook', 'slack', 'discord', 'teams', 'email')),
    target     text NOT NULL,
    events     text[] NOT NULL,
    options    jsonb NOT NULL DEFAULT '{}',
    created_by name NOT NULL DEFAULT session_user,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The outbox: one row per message, inserted in the transaction of the outcome it reports and
-- sent by the worker. next_try_at is NULL once delivered or given up (backup_ext.alert_retries).
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

-- Events raised once per crossing, so that a restart does not raise them again: 'stale' per
-- database and newest successful backup (as_of, its finish), 'copy_lagging' per backup.
CREATE TABLE backup_ext.alert_raised (
    event     text NOT NULL,
    subject   text NOT NULL,
    as_of     timestamptz,
    raised_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event, subject)
);

SELECT pg_catalog.pg_extension_config_dump('backup_ext.alert_targets', '');

-- Every alert with how its deliveries went (superusers only: no grant).
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
