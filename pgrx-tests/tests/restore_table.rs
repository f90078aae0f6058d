//! restore_table(): one table of a backup restored beside the live one. Yesterday's `orders`
//! comes back as `orders_restored_<id>` while the live `orders` (changed since the backup),
//! its indexes, sequence, trigger and dependent view stay as they are; in every archive
//! format, into another schema and another database, and with data_only into an empty table.
//! Refusals carry their SQLSTATE; hostile names work.

use backup_ext_e2e::postgres::error::SqlState;
use backup_ext_e2e::postgres::Client;
use backup_ext_e2e::*;

fn cluster() -> SharedCluster {
    shared_cluster("restore_table", &[])
}

const SHOP_SQL: &str = r#"
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 20) AS i;
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    amount numeric(10,2) NOT NULL CHECK (amount > 0),
    note text DEFAULT 'none; it''s "fine"',
    placed date NOT NULL DEFAULT '2026-01-01',
    touched int NOT NULL DEFAULT 0
);
CREATE INDEX orders_customer_idx ON orders (customer_id) WHERE note <> 'ON public.orders';
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN NEW.touched := NEW.touched + 1; RETURN NEW; END$$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 50;
INSERT INTO orders (customer_id, amount, note)
SELECT i % 20 + 1, (i * 7 % 100) + 0.5, CASE WHEN i % 3 = 0 THEN NULL ELSE 'n ' || i || E' \t ü' END
  FROM generate_series(1, 300) AS i;
CREATE TABLE tickets (
    id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject text NOT NULL UNIQUE
);
INSERT INTO tickets (subject) SELECT 'subject ' || i FROM generate_series(1, 50) AS i;
"#;

/// Changes made after the backup: rows updated, deleted and added (the sequence moves on).
const CHANGES_SQL: &str = "UPDATE orders SET amount = amount + 1 WHERE id % 5 = 0;
     DELETE FROM orders WHERE id % 7 = 0;
     INSERT INTO orders (customer_id, amount) SELECT 1, 99 FROM generate_series(1, 10);";

/// Everything about the live table a restore must not touch.
#[derive(Debug, PartialEq)]
struct LiveState {
    rows: (i64, Option<String>),
    indexes: Vec<String>,
    constraints: Vec<String>,
    sequence: (i64, String),
    triggers: Vec<String>,
    view: String,
    view_rows: i64,
}

fn live_state(c: &Cluster, db: &str) -> LiveState {
    let mut client = c.client(db);
    let texts = |client: &mut Client, sql: &str| -> Vec<String> {
        client
            .query(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let indexes = texts(
        &mut client,
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'orders' ORDER BY indexname",
    );
    let constraints = texts(
        &mut client,
        "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
          WHERE conrelid = 'public.orders'::regclass ORDER BY conname",
    );
    let triggers = texts(
        &mut client,
        "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass
          ORDER BY tgname",
    );
    let row = client
        .query_one(
            "SELECT last_value, pg_get_serial_sequence('public.orders', 'id'),
                    pg_get_viewdef('public.big_orders'::regclass),
                    (SELECT count(*) FROM big_orders)
               FROM orders_id_seq",
            &[],
        )
        .unwrap();
    LiveState {
        rows: c.table_fingerprint(db, "public.orders"),
        indexes,
        constraints,
        sequence: (row.get(0), row.get(1)),
        triggers,
        view: row.get(2),
        view_rows: row.get(3),
    }
}

fn restore_table_job(c: &Cluster, sql: &str) -> i64 {
    let job = c.enqueue(sql);
    let status = c.wait_final(job, SMALL_JOB);
    assert_eq!(status, "succeeded", "{sql}: {:?}", job_outcome(c, job));
    job
}

fn texts(c: &Cluster, db: &str, sql: &str) -> Vec<String> {
    c.client(db)
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Columns of a table: name, type, NOT NULL, default.
fn columns(c: &Cluster, db: &str, table: &str) -> Vec<String> {
    texts(
        c,
        db,
        &format!(
            "SELECT attname || ' ' || format_type(atttypid, atttypmod)
                    || CASE WHEN attnotnull THEN ' not null' ELSE '' END
                    || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
               FROM pg_attribute a LEFT JOIN pg_attrdef d
                 ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE attrelid = {}::regclass AND attnum > 0 AND NOT attisdropped
              ORDER BY attnum",
            quote_literal(table)
        ),
    )
}

#[test]
fn orders_come_back_beside_the_live_table_in_every_format() {
    let c = cluster();
    // A plain script gives the same table: its entries come from pg_dump's header comments,
    // its rows from the table's COPY block (gunzipped on the way when compressed).
    for (i, (format, compress)) in [
        ("custom", ""),
        ("directory", ""),
        ("tar", ""),
        ("plain", ""),
        ("plain", ", compress => '6'"),
    ]
    .into_iter()
    .enumerate()
    {
        let db = format!("rt_shop_{i}_{format}");
        c.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        c.client(&db).batch_execute(SHOP_SQL).unwrap();
        let at_backup = c.table_fingerprint(&db, "public.orders");
        assert_eq!(at_backup.0, 300);
        let b = backup_db(&c, &db, &format!(", format => '{format}'{compress}"));
        c.client(&db).batch_execute(CHANGES_SQL).unwrap();
        let live = live_state(&c, &db);
        assert_ne!(
            live.rows, at_backup,
            "the live table changed since the backup"
        );

        let job = restore_table_job(
            &c,
            &format!("SELECT backup_ext.restore_table({}, 'orders')", b.backup_id),
        );
        let restored = format!("public.orders_restored_{}", b.backup_id);
        assert_eq!(
            c.table_fingerprint(&db, &restored),
            at_backup,
            "{format}: the restored rows are the backup's"
        );
        assert_eq!(
            live_state(&c, &db),
            live,
            "{format}: the live table is untouched"
        );

        // Same columns, types, NOT NULLs and defaults, except the serial's nextval().
        let mut expected = columns(&c, &db, "public.orders");
        expected[0] = "id integer not null".into();
        assert_eq!(columns(&c, &db, &restored), expected, "{format}");
        // CHECK and primary key come along under new names; the foreign key and the
        // trigger do not. (PostgreSQL 18 lists NOT NULL constraints too, contype 'n': the
        // column check above covers them.)
        let id = b.backup_id;
        assert_eq!(
            texts(
                &c,
                &db,
                &format!(
                    "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
                      WHERE conrelid = '{restored}'::regclass AND contype <> 'n'
                      ORDER BY conname"
                )
            ),
            [
                "orders_amount_check CHECK ((amount > (0)::numeric))".to_string(),
                format!("orders_pkey_restored_{id} PRIMARY KEY (id)"),
            ]
        );
        assert_eq!(
            texts(
                &c,
                &db,
                &format!(
                    "SELECT indexdef FROM pg_indexes WHERE tablename = 'orders_restored_{id}'
                      ORDER BY indexname"
                )
            ),
            [
                format!(
                    "CREATE INDEX orders_customer_idx_restored_{id} ON public.orders_restored_{id} \
                     USING btree (customer_id) WHERE (note <> 'ON public.orders'::text)"
                ),
                format!(
                    "CREATE UNIQUE INDEX orders_pkey_restored_{id} ON public.orders_restored_{id} \
                     USING btree (id)"
                ),
            ]
        );
        assert_eq!(
            texts(
                &c,
                &db,
                &format!(
                    "SELECT tgname::text FROM pg_trigger WHERE tgrelid = '{restored}'::regclass"
                )
            ),
            Vec::<String>::new()
        );
        // The CHECK holds on the new table.
        let mut client = c.client(&db);
        expect_sqlstate(
            &mut client,
            &format!("INSERT INTO {restored} (id, customer_id, amount) VALUES (-1, 1, -5)"),
            "23514",
        );
        assert_eq!(c.job(job).requested_by.as_deref(), Some("postgres"));

        // The same name again is refused at call time, and nothing is enqueued.
        let mut catalog = c.client("postgres");
        let message = refused(
            &mut catalog,
            &format!("SELECT backup_ext.restore_table({id}, 'orders')"),
            &SqlState::DUPLICATE_TABLE,
        );
        assert!(
            message.contains(&format!(
                "relation \"public\".\"orders_restored_{id}\" already exists"
            )),
            "{message}"
        );
    }
}

#[test]
fn into_another_schema_another_database_and_data_only() {
    let c = cluster();
    for db in ["rt_src", "rt_other"] {
        c.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
    }
    c.client("rt_src").batch_execute(SHOP_SQL).unwrap();
    c.client("rt_other")
        .batch_execute("CREATE SCHEMA archive")
        .unwrap();
    let orders = c.table_fingerprint("rt_src", "public.orders");
    let tickets = c.table_fingerprint("rt_src", "public.tickets");
    let b = backup_db(&c, "rt_src", "");
    let id = b.backup_id;

    // Another schema of the same database; the identity column comes back without its
    // identity, the UNIQUE constraint renamed.
    c.client("rt_src")
        .batch_execute("CREATE SCHEMA yesterday")
        .unwrap();
    restore_table_job(
        &c,
        &format!("SELECT backup_ext.restore_table({id}, 'tickets', into_schema => 'yesterday')"),
    );
    let restored = format!("yesterday.tickets_restored_{id}");
    assert_eq!(c.table_fingerprint("rt_src", &restored), tickets);
    assert_eq!(
        columns(&c, "rt_src", &restored),
        ["id integer not null", "subject text not null"]
    );
    assert_eq!(
        texts(
            &c,
            "rt_src",
            &format!(
                "SELECT conname::text FROM pg_constraint WHERE conrelid = '{restored}'::regclass
                  AND contype <> 'n' ORDER BY conname"
            )
        ),
        [
            format!("tickets_pkey_restored_{id}"),
            format!("tickets_subject_key_restored_{id}"),
        ]
    );

    // Another database, another schema, a name of our choosing.
    restore_table_job(
        &c,
        &format!(
            "SELECT backup_ext.restore_table({id}, 'orders', into_db => 'rt_other',
                    into_schema => 'archive', into_name => 'orders 2025')"
        ),
    );
    assert_eq!(
        c.table_fingerprint("rt_other", "archive.\"orders 2025\""),
        orders
    );

    // data_only into that table once emptied; refused while it holds rows.
    let mut catalog = c.client("postgres");
    let data_only = format!(
        "SELECT backup_ext.restore_table({id}, 'orders', into_db => 'rt_other',
                into_schema => 'archive', into_name => 'orders 2025',
                options => '{{\"data_only\": true}}')"
    );
    let message = refused(
        &mut catalog,
        &data_only,
        &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
    );
    assert!(message.contains("is not empty"), "{message}");
    c.client("rt_other")
        .batch_execute("TRUNCATE archive.\"orders 2025\"")
        .unwrap();
    restore_table_job(&c, &data_only);
    assert_eq!(
        c.table_fingerprint("rt_other", "archive.\"orders 2025\""),
        orders
    );
    // A failure in the job (here a row the target's CHECK refuses, half-way through the COPY)
    // leaves nothing behind: the table stays empty.
    c.client("rt_other")
        .batch_execute(
            "CREATE TABLE archive.strict (LIKE archive.\"orders 2025\", CHECK (amount < 50))",
        )
        .unwrap();
    let job = c.enqueue(&format!(
        "SELECT backup_ext.restore_table({id}, 'orders', into_db => 'rt_other',
                into_schema => 'archive', into_name => 'strict',
                options => '{{\"data_only\": true}}')"
    ));
    assert_eq!(c.wait_final(job, SMALL_JOB), "failed");
    let (_, error, _) = job_outcome(&c, job);
    let error = error.unwrap_or_default();
    assert!(
        error.contains("violates check constraint \"strict_amount_check\""),
        "{error}"
    );
    assert_eq!(c.table_fingerprint("rt_other", "archive.strict"), (0, None));

    // data_only into a table that does not exist.
    let message = refused(
        &mut catalog,
        &format!(
            "SELECT backup_ext.restore_table({id}, 'orders', into_db => 'rt_other',
                    into_name => 'nowhere', options => '{{\"data_only\": true}}')"
        ),
        &SqlState::UNDEFINED_TABLE,
    );
    assert!(
        message.contains("\"public\".\"nowhere\" does not exist"),
        "{message}"
    );
}

#[test]
fn refusals_have_their_sqlstate_and_enqueue_nothing() {
    let c = cluster();
    c.client("postgres")
        .batch_execute("CREATE DATABASE rt_refuse")
        .unwrap();
    c.client("rt_refuse").batch_execute(SHOP_SQL).unwrap();
    let b = backup_db(&c, "rt_refuse", "");
    let plain = backup_db(&c, "rt_refuse", ", format => 'plain'");
    let id = b.backup_id;
    let mut catalog = c.client("postgres");
    let before = restore_jobs_for(&c, &[id, plain.backup_id]);

    let cases: Vec<(String, SqlState, &str)> = vec![
        (
            format!("SELECT backup_ext.restore_table({id}, 'no_such_table')"),
            SqlState::UNDEFINED_TABLE,
            "holds no table \"public\".\"no_such_table\"",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, 'Orders')"),
            SqlState::UNDEFINED_TABLE,
            "holds no table \"public\".\"Orders\"",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, 'orders', 'other')"),
            SqlState::UNDEFINED_TABLE,
            "holds no table \"other\".\"orders\"",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, 'orders', into_name => 'customers')"),
            SqlState::DUPLICATE_TABLE,
            "relation \"public\".\"customers\" already exists",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, 'orders', into_name => 'big_orders')"),
            SqlState::DUPLICATE_TABLE,
            "relation \"public\".\"big_orders\" already exists",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, 'orders', into_name => 'orders')"),
            SqlState::DUPLICATE_TABLE,
            "is the table being restored",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, 'orders', into_schema => 'nope')"),
            SqlState::INVALID_SCHEMA_NAME,
            "schema \"nope\" does not exist in database \"rt_refuse\"",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, 'orders', into_db => 'rt_missing')"),
            SqlState::INVALID_CATALOG_NAME,
            "rt_missing",
        ),
        (
            format!("SELECT backup_ext.restore_table({}, 'no_such_table')", plain.backup_id),
            SqlState::UNDEFINED_TABLE,
            "holds no table \"public\".\"no_such_table\"",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, 'orders', options => '{{\"where\": \"id > 1\"}}')"),
            SqlState::INVALID_PARAMETER_VALUE,
            "option \"where\" does not apply to restore_table()",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, 'orders', into_name => '{}')", "x".repeat(64)),
            SqlState::NAME_TOO_LONG,
            "is 64 bytes long",
        ),
        (
            format!("SELECT backup_ext.restore_table({id}, '')"),
            SqlState::INVALID_PARAMETER_VALUE,
            "table_name is empty",
        ),
    ];
    for (sql, state, text) in &cases {
        let message = refused(&mut catalog, sql, state);
        assert!(message.contains(text), "{sql}: {message}");
        assert!(message.contains("hint:"), "{sql}: {message}");
    }
    assert_eq!(restore_jobs_for(&c, &[id, plain.backup_id]), before);
}

#[test]
fn restorers_restore_only_their_own_tables_into_their_own_databases() {
    let c = cluster();
    c.client("postgres")
        .batch_execute(
            "CREATE ROLE rt_owner LOGIN IN ROLE backup_ext_restorer;
             CREATE ROLE rt_stranger LOGIN IN ROLE backup_ext_restorer;
             CREATE ROLE rt_nobody LOGIN;",
        )
        .unwrap();
    c.client("postgres")
        .batch_execute("CREATE DATABASE rt_rights OWNER rt_owner")
        .unwrap();
    c.client_as("rt_rights", "rt_owner")
        .batch_execute(
            "CREATE TABLE mine (id int PRIMARY KEY, v text NOT NULL);
             INSERT INTO mine SELECT i, 'v' || i FROM generate_series(1, 25) AS i;",
        )
        .unwrap();
    c.client("rt_rights")
        .batch_execute(
            "CREATE TABLE theirs (id int PRIMARY KEY, secret text);
             INSERT INTO theirs VALUES (1, 'not for rt_owner');",
        )
        .unwrap();
    let mine = c.table_fingerprint("rt_rights", "public.mine");
    let b = backup_db(&c, "rt_rights", "");
    let id = b.backup_id;

    let mut nobody = c.client_as("postgres", "rt_nobody");
    refused(
        &mut nobody,
        &format!("SELECT backup_ext.restore_table({id}, 'mine')"),
        &SqlState::INSUFFICIENT_PRIVILEGE,
    );
    // A restorer that does not own the database.
    let mut stranger = c.client_as("postgres", "rt_stranger");
    let message = refused(
        &mut stranger,
        &format!("SELECT backup_ext.restore_table({id}, 'mine')"),
        &SqlState::INSUFFICIENT_PRIVILEGE,
    );
    assert!(message.contains("it is not its owner"), "{message}");
    // The owner of the database, but not of the table.
    let mut owner = c.client_as("postgres", "rt_owner");
    let message = refused(
        &mut owner,
        &format!("SELECT backup_ext.restore_table({id}, 'theirs')"),
        &SqlState::INSUFFICIENT_PRIVILEGE,
    );
    assert!(
        message.contains("it is owned by role \"postgres\""),
        "{message}"
    );
    assert_eq!(restore_jobs_for(&c, &[id]), 0);

    // Her own table: restored with her rights, hers.
    let job: i64 = owner
        .query_one(
            &format!("SELECT backup_ext.restore_table({id}, 'mine')"),
            &[],
        )
        .unwrap_or_else(|e| panic!("restore_table as owner: {}", describe(&e)))
        .get(0);
    let status: String = owner
        .query_one("SELECT backup_ext.wait_for($1, '1 minute')", &[&job])
        .unwrap()
        .get(0);
    assert_eq!(status, "succeeded", "{:?}", job_outcome(&c, job));
    let restored = format!("public.mine_restored_{id}");
    assert_eq!(c.table_fingerprint("rt_rights", &restored), mine);
    assert_eq!(
        texts(
            &c,
            "rt_rights",
            &format!("SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = '{restored}'::regclass")
        ),
        ["rt_owner"]
    );
    assert_eq!(c.job(job).requested_by.as_deref(), Some("rt_owner"));
}

#[test]
fn hostile_names_work_or_are_refused_cleanly() {
    let c = cluster();
    c.client("postgres")
        .batch_execute("CREATE DATABASE rt_hostile")
        .unwrap();
    let schema = "we\"ird.s ch; ü";
    let table = "Tä\"b.le; DROP TABLE x; --";
    let long = format!("{}{}", "ä".repeat(30), "xyz"); // 63 bytes
    assert_eq!(long.len(), 63);
    let (qs, qt, ql) = (quote_ident(schema), quote_ident(table), quote_ident(&long));
    c.client("rt_hostile")
        .batch_execute(&format!(
            "CREATE SCHEMA {qs};
             CREATE TABLE {qs}.{qt} (id int PRIMARY KEY, \"va\"\"l\" text CHECK (\"va\"\"l\" <> ''));
             CREATE INDEX {ql} ON {qs}.{qt} (\"va\"\"l\");
             INSERT INTO {qs}.{qt} SELECT i, 'x' || i FROM generate_series(1, 30) AS i;
             CREATE TABLE {ql} (id int PRIMARY KEY);
             INSERT INTO {ql} SELECT generate_series(1, 5);"
        ))
        .unwrap();
    let hostile = c.table_fingerprint("rt_hostile", &format!("{qs}.{qt}"));
    let long_rows = c.table_fingerprint("rt_hostile", &format!("public.{ql}"));
    let b = backup_db(&c, "rt_hostile", "");
    let id = b.backup_id;

    restore_table_job(
        &c,
        &format!(
            "SELECT backup_ext.restore_table({id}, {}, {})",
            quote_literal(table),
            quote_literal(schema)
        ),
    );
    let restored = format!("{table}_restored_{id}");
    assert_eq!(
        c.table_fingerprint("rt_hostile", &format!("{qs}.{}", quote_ident(&restored))),
        hostile
    );
    // The index's 63-byte name is shortened to make room for the suffix.
    let suffix = format!("_restored_{id}");
    let keep = 63 - suffix.len();
    let mut cut = keep;
    while !long.is_char_boundary(cut) {
        cut -= 1;
    }
    let index_name = format!("{}{suffix}", &long[..cut]);
    assert_eq!(
        texts(
            &c,
            "rt_hostile",
            &format!(
                "SELECT relname::text FROM pg_index JOIN pg_class ON oid = indexrelid
                  WHERE indrelid = '{qs}.{}'::regclass AND NOT indisprimary",
                quote_ident(&restored)
            )
        ),
        [index_name]
    );

    // A 63-byte table: its default name would be too long; a given one works.
    let mut catalog = c.client("postgres");
    let message = refused(
        &mut catalog,
        &format!(
            "SELECT backup_ext.restore_table({id}, {})",
            quote_literal(&long)
        ),
        &SqlState::NAME_TOO_LONG,
    );
    assert!(message.contains("into_name"), "{message}");
    restore_table_job(
        &c,
        &format!(
            "SELECT backup_ext.restore_table({id}, {}, into_name => {})",
            quote_literal(&long),
            quote_literal("ünï \"côde\"")
        ),
    );
    assert_eq!(
        c.table_fingerprint("rt_hostile", "public.\"ünï \"\"côde\"\"\""),
        long_rows
    );
    // A quoted identifier given as a name is a name with quotes in it, not found.
    refused(
        &mut catalog,
        &format!(
            "SELECT backup_ext.restore_table({id}, {}, {})",
            quote_literal(&qt),
            quote_literal(schema)
        ),
        &SqlState::UNDEFINED_TABLE,
    );
}

#[test]
fn one_table_of_an_encrypted_backup_in_s3_comes_back() {
    let s3 = Seaweed::start("restore_table");
    let c = Cluster::start("restore_table_s3");
    let (_, recipient) = encrypted_offsite(&c, &s3);
    let mut client = c.client("postgres");
    exec(
        &mut client,
        &format!(
            "SELECT backup_ext.set_encryption(ARRAY[{}]::text[], 'rt_app')",
            quote_literal(&recipient)
        ),
    );
    c.create_sample_db("rt_app");
    let before = c.table_fingerprint("rt_app", "t1");
    let job = c.enqueue(
        "SELECT backup_ext.backup_database('rt_app', options => '{\"storage\": \"offsite\"}')",
    );
    assert_eq!(
        c.wait_final(job, SMALL_JOB),
        "succeeded",
        "{:?}",
        c.job(job)
    );
    let id: i64 = client
        .query_one(
            "SELECT backup_id FROM backup_ext.backups WHERE job_id = $1 AND encrypted \
             AND storage = 'offsite'",
            &[&job],
        )
        .unwrap()
        .get(0);
    c.client("rt_app")
        .batch_execute("UPDATE t1 SET n = n + 1 WHERE id % 2 = 0")
        .unwrap();
    let after = c.table_fingerprint("rt_app", "t1");
    restore_table_job(&c, &format!("SELECT backup_ext.restore_table({id}, 't1')"));
    assert_eq!(
        c.table_fingerprint("rt_app", &format!("t1_restored_{id}")),
        before
    );
    assert_eq!(c.table_fingerprint("rt_app", "t1"), after);
}

/// A table whose CHECK constraint and index call a function its (non-superuser) owner wrote,
/// which refuses to run as a superuser: a superuser's restore_table() gives the new table to
/// that owner (a role whose name has a space) and loads its rows and builds its index as the
/// owner. Into a schema the owner may not use, the job fails with 42501 and leaves nothing.
#[test]
fn a_superusers_restore_runs_the_tables_own_code_as_its_owner() {
    let c = cluster();
    c.client("postgres")
        .batch_execute("CREATE ROLE \"rt Code Owner\" LOGIN")
        .unwrap();
    c.client("postgres")
        .batch_execute("CREATE DATABASE rt_code")
        .unwrap();
    c.client("rt_code")
        .batch_execute(
            "CREATE SCHEMA app AUTHORIZATION \"rt Code Owner\";
             CREATE SCHEMA vault;",
        )
        .unwrap();
    c.client_as("rt_code", "rt Code Owner")
        .batch_execute(
            "CREATE FUNCTION app.not_as_superuser(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE
               AS $$BEGIN
                   IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
                       RAISE EXCEPTION 'ran as superuser %', current_user;
                   END IF;
                   RETURN v;
               END$$;
             CREATE TABLE app.ledger (
                 id int PRIMARY KEY,
                 v int NOT NULL CHECK (app.not_as_superuser(v) >= 0));
             CREATE INDEX ledger_v_idx ON app.ledger (app.not_as_superuser(v));
             INSERT INTO app.ledger SELECT i, i FROM generate_series(1, 40) AS i;",
        )
        .unwrap();
    let live = c.table_fingerprint("rt_code", "app.ledger");
    let id = backup_db(&c, "rt_code", "").backup_id;

    let job = restore_table_job(
        &c,
        &format!("SELECT backup_ext.restore_table({id}, 'ledger', schema_name => 'app')"),
    );
    let restored = format!("app.ledger_restored_{id}");
    assert_eq!(c.table_fingerprint("rt_code", &restored), live);
    assert_eq!(
        texts(
            &c,
            "rt_code",
            &format!(
                "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = '{restored}'::regclass
                 UNION ALL
                 SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = '{restored}'::regclass
                    AND NOT indisprimary"
            )
        ),
        ["rt Code Owner", &format!("app.ledger_v_idx_restored_{id}")]
    );
    assert_eq!(c.job(job).requested_by.as_deref(), Some("postgres"));

    let job = c.enqueue(&format!(
        "SELECT backup_ext.restore_table({id}, 'ledger', schema_name => 'app', into_schema => 'vault')"
    ));
    assert_eq!(c.wait_final(job, SMALL_JOB), "failed");
    let (_, error, _) = job_outcome(&c, job);
    let error = error.unwrap_or_default();
    assert!(
        error.contains("role \"rt Code Owner\", the owner of vault.ledger")
            && error.contains("may not use schema vault"),
        "{error}"
    );
    assert_eq!(
        texts(
            &c,
            "rt_code",
            "SELECT count(*)::text FROM pg_class WHERE relnamespace = 'vault'::regnamespace"
        ),
        ["0"]
    );
}
