use super::*;

fn target(schema: &str, name: &str, into_schema: &str, into_name: &str) -> TableTarget {
    TableTarget {
        schema: schema.into(),
        name: name.into(),
        into_schema: into_schema.into(),
        into_name: into_name.into(),
        data_only: false,
        suffix: "_restored_7".into(),
    }
}

/// What pg_restore 16 prints for a serial table with a CHECK, a primary key, an index, a
/// foreign key's neighbour and another table's index, with `--no-owner --no-privileges`.
const SCRIPT: &str = r#"--
-- PostgreSQL database dump
--

\restrict Zx1

SET statement_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;

SET default_table_access_method = heap;

--
-- Name: orders; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.orders (
    id integer NOT NULL,
    customer_id integer NOT NULL,
    amount numeric(10,2) DEFAULT 0 NOT NULL,
    note text DEFAULT 'public.orders; it''s $$ -- not a comment'::text,
    CONSTRAINT orders_amount_check CHECK ((amount >= (0)::numeric))
);

--
-- Name: orders id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.orders ALTER COLUMN id SET DEFAULT nextval('public.orders_id_seq'::regclass);

--
-- Name: orders_archive id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.orders_archive ALTER COLUMN id SET DEFAULT nextval('public.orders_archive_id_seq'::regclass);

--
-- Name: orders orders_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);

--
-- Name: orders_customer_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX orders_customer_idx ON public.orders USING btree (customer_id) WHERE (note <> 'ON public.orders'::text);

--
-- Name: other_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX other_idx ON public.orders_archive USING btree (id);

ALTER TABLE public.orders CLUSTER ON orders_customer_idx;

--
-- PostgreSQL database dump complete
--

\unrestrict Zx1

"#;

#[test]
fn serial_table_is_rewritten() {
    let t = target("public", "orders", "public", "orders_restored_7");
    let def = table_definition(SCRIPT, &t, &["transaction_timeout".to_string()]).unwrap();
    assert_eq!(
        def.before_data,
        [
            "SET statement_timeout = 0;",
            "SET client_encoding = 'UTF8';",
            "SET standard_conforming_strings = on;",
            "SELECT pg_catalog.set_config('search_path', '', false);",
            "SET check_function_bodies = false;",
            "SET default_table_access_method = heap;",
            "CREATE TABLE \"public\".\"orders_restored_7\" (\n    id integer NOT NULL,\n    \
             customer_id integer NOT NULL,\n    amount numeric(10,2) DEFAULT 0 NOT NULL,\n    \
             note text DEFAULT 'public.orders; it''s $$ -- not a comment'::text,\n    \
             CONSTRAINT orders_amount_check CHECK ((amount >= (0)::numeric))\n);",
        ]
    );
    assert_eq!(
        def.after_data,
        [
            "ALTER TABLE ONLY \"public\".\"orders_restored_7\"\n    ADD CONSTRAINT \
             \"orders_pkey_restored_7\" PRIMARY KEY (id);",
            "CREATE INDEX \"orders_customer_idx_restored_7\" ON \"public\".\"orders_restored_7\" \
             USING btree (customer_id) WHERE (note <> 'ON public.orders'::text);",
        ]
    );
    assert_eq!(def.dropped_defaults, ["id"]);
    assert!(def.after_script().ends_with("::text);\n"));
}

#[test]
fn a_missing_table_is_an_error() {
    let t = target("public", "nope", "public", "x");
    let e = table_definition(SCRIPT, &t, &[]).unwrap_err();
    assert_eq!(
        e,
        "the archive's definitions hold no CREATE TABLE \"public\".\"nope\""
    );
}

#[test]
fn hostile_names_are_matched_and_quoted() {
    let schema = "we\"ird.sch ema";
    let name = "Tä\"b.le; DROP";
    let script = format!(
        "CREATE TABLE {} (\n    x text\n);\n\
         CREATE INDEX \"i.x\"\"\" ON {} USING btree (x);\n\
         CREATE TABLE public.other (y int);\n",
        qualified(schema, name),
        qualified(schema, name)
    );
    let t = target(schema, name, "ünï côde", "new \"one\"");
    let def = table_definition(&script, &t, &[]).unwrap();
    assert_eq!(
        def.before_data,
        ["CREATE TABLE \"ünï côde\".\"new \"\"one\"\"\" (\n    x text\n);"]
    );
    assert_eq!(
        def.after_data,
        ["CREATE INDEX \"i.x\"\"_restored_7\" ON \"ünï côde\".\"new \"\"one\"\"\" USING btree (x);"]
    );
}

#[test]
fn a_name_that_differs_only_in_case_is_another_table() {
    let script = "CREATE TABLE public.\"Orders\" (x int);\nCREATE TABLE public.orders (y int);\n";
    let def = table_definition(script, &target("public", "Orders", "public", "o2"), &[]).unwrap();
    assert_eq!(def.before_data, ["CREATE TABLE \"public\".\"o2\" (x int);"]);
    let def = table_definition(script, &target("public", "orders", "public", "o2"), &[]).unwrap();
    assert_eq!(def.before_data, ["CREATE TABLE \"public\".\"o2\" (y int);"]);
}

#[test]
fn children_and_partitions_are_refused() {
    for script in [
        "CREATE TABLE public.c (x int)\nINHERITS (public.p);\n",
        "CREATE TABLE public.c PARTITION OF public.p FOR VALUES IN (1);\n",
    ] {
        let e = table_definition(script, &target("public", "c", "public", "c2"), &[]).unwrap_err();
        assert!(
            e.contains("inherits from another table or is a partition"),
            "{e}"
        );
    }
    // A column called "inherits" inside the column list is not the clause.
    let script = "CREATE TABLE public.c (\"inherits\" int, partition int);\n";
    assert!(table_definition(script, &target("public", "c", "public", "c2"), &[]).is_ok());
}

#[test]
fn strings_comments_and_dollar_quotes_hide_names() {
    let script = "/* CREATE TABLE public.t (a int); /* nested */ */\n\
        CREATE TABLE public.t (\n    a text DEFAULT $x$CREATE TABLE public.t$x$,\n    \
        b text DEFAULT E'\\' public.t'\n);\n";
    let def = table_definition(script, &target("public", "t", "s2", "t"), &[]).unwrap();
    assert_eq!(
        def.before_data,
        [
            "CREATE TABLE \"s2\".\"t\" (\n    a text DEFAULT $x$CREATE TABLE public.t$x$,\n    \
          b text DEFAULT E'\\' public.t'\n);"
        ]
    );
    assert!(table_definition(
        "CREATE TABLE public.t (a text DEFAULT 'x);",
        &target("public", "t", "s", "u"),
        &[]
    )
    .is_err());
}

#[test]
fn long_names_are_shortened_at_character_boundaries() {
    let long = "ä".repeat(31) + "x"; // 63 bytes
    assert_eq!(long.len(), 63);
    let s = with_suffix(&long, "_restored_12");
    assert!(s.len() <= 63, "{}", s.len());
    assert!(s.ends_with("_restored_12"));
    assert_eq!(s, "ä".repeat(25) + "_restored_12");
    assert_eq!(with_suffix("i", "_restored_1"), "i_restored_1");
}

#[test]
fn default_names() {
    assert_eq!(
        default_into_name("orders", 42).unwrap(),
        "orders_restored_42"
    );
    let e = default_into_name(&"t".repeat(55), 42).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NameTooLong);
    assert!(e.message.contains("67 bytes"), "{}", e.message);
    assert_eq!(default_into_name(&"t".repeat(51), 42).unwrap().len(), 63);
    assert!(default_into_name(&"t".repeat(52), 42).is_err());
}

#[test]
fn names_are_checked() {
    let mut t = target("public", "orders", "public", "orders");
    assert_eq!(t.validate().unwrap_err().kind, ErrorKind::DuplicateTable);
    t.data_only = true;
    // data_only into the table itself is refused by the emptiness check, not here.
    assert!(t.validate().is_ok());
    t.into_name = "x".repeat(64);
    assert_eq!(t.validate().unwrap_err().kind, ErrorKind::NameTooLong);
    t.into_name = String::new();
    assert_eq!(t.validate().unwrap_err().kind, ErrorKind::InvalidParameter);
    t.into_name = "a\0b".into();
    assert!(t.validate().unwrap_err().message.contains("NUL"));
    t.into_name = "x".repeat(63);
    assert!(t.validate().is_ok());
}

#[test]
fn copy_lines() {
    assert_eq!(
        copy_line_into(
            "COPY public.orders (id, note) FROM stdin;\n",
            "public",
            "orders",
            "\"s\".\"o 2\""
        )
        .unwrap(),
        "COPY \"s\".\"o 2\" (id, note) FROM stdin;\n"
    );
    assert_eq!(
        copy_line_into(
            "COPY \"a.b\".\"c\"\"d\" (x) FROM stdin;\n",
            "a.b",
            "c\"d",
            "\"n\".\"m\""
        )
        .unwrap(),
        "COPY \"n\".\"m\" (x) FROM stdin;\n"
    );
    assert_eq!(
        copy_line_into(
            "COPY public.orders_x (id) FROM stdin;\n",
            "public",
            "orders",
            "x"
        ),
        None
    );
    assert_eq!(
        copy_line_into(
            "COPY public.\"Orders\" (id) FROM stdin;\n",
            "public",
            "orders",
            "x"
        ),
        None
    );
}

#[test]
fn table_entries_of_a_listing() {
    let listing = ";\n; Archive created at 2026-11-29\n;\n\
        218; 1259 16390 TABLE public orders postgres\n\
        219; 1259 16391 SEQUENCE public orders_id_seq postgres\n\
        220; 1259 16392 TABLE public orders_archive postgres\n\
        3300; 2604 16400 DEFAULT public orders id postgres\n\
        3400; 0 16390 TABLE DATA public orders postgres\n\
        3401; 0 16392 TABLE DATA public orders_archive postgres\n\
        3500; 2606 16410 CONSTRAINT public orders orders_pkey postgres\n\
        3501; 1259 16411 INDEX public orders_customer_idx postgres\n\
        3502; 2606 16412 FK CONSTRAINT public orders orders_customer_id_fkey postgres\n\
        3503; 2620 16413 TRIGGER public orders orders_touch postgres\n";
    let entries = crate::restore::toc::parse_toc(listing).unwrap();
    let found = table_entries(&entries, "public", "orders").unwrap();
    assert_eq!(found.table, 218);
    assert_eq!(found.data, Some(3400));
    assert_eq!(found.definitions, [218, 3300, 3500, 3501]);
    assert_eq!(found.owner.as_deref(), Some("postgres"));
    assert_eq!(table_entries(&entries, "public", "nope"), None);
    assert_eq!(table_entries(&entries, "other", "orders"), None);
}

#[test]
fn an_owner_with_spaces_is_found_with_its_table() {
    // pg_restore --list does not quote: `Ré Owner` leaves `Ré` at the end of the name.
    let listing = "218; 1259 16390 TABLE public orders Ré Owner\n\
        221; 1259 16393 TABLE public orders Ré old_tables\n\
        3400; 0 16390 TABLE DATA public orders Ré Owner\n\
        3500; 2606 16410 CONSTRAINT public orders orders_pkey Ré Owner\n";
    let entries = crate::restore::toc::parse_toc(listing).unwrap();
    let found = table_entries(&entries, "public", "orders").unwrap();
    assert_eq!(found.table, 218);
    assert_eq!(found.data, Some(3400));
    assert_eq!(found.owner.as_deref(), Some("Ré Owner"));
    // An exact name wins over a longer one.
    let exact = "5; 1259 1 TABLE public orders Ré x\n6; 1259 2 TABLE public orders bob\n";
    let entries = crate::restore::toc::parse_toc(exact).unwrap();
    let found = table_entries(&entries, "public", "orders").unwrap();
    assert_eq!((found.table, found.owner.as_deref()), (6, Some("bob")));
}

#[test]
fn a_superusers_table_restore_hands_the_table_and_the_session_to_its_owner() {
    let t = target("public", "orders", "Recovered", "orders");
    let sql = act_as_owner_sql(&t, Some("Ré \"Owner\""));
    let lines: Vec<&str> = sql.lines().collect();
    assert_eq!(lines.len(), 3, "{sql}");
    assert_eq!(
        lines[0],
        "ALTER TABLE \"Recovered\".\"orders\" OWNER TO \"Ré \"\"Owner\"\"\";"
    );
    assert!(lines[1].starts_with("DO $backup_ext_0$BEGIN IF NOT pg_catalog.has_schema_privilege("));
    assert!(lines[1].contains("'Recovered', 'USAGE') THEN RAISE EXCEPTION USING ERRCODE = '42501'"));
    assert_eq!(
        lines[2],
        "SELECT pg_catalog.set_config('role', r.rolname, false) FROM pg_catalog.pg_roles r WHERE \
         r.oid = (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = \
         '\"Recovered\".\"orders\"'::pg_catalog.regclass);"
    );
    // No such role here: the table stays the restoring role's; into an existing table
    // (data_only): its owner stays, and the rows load as that owner.
    assert!(!act_as_owner_sql(&t, None).contains("ALTER TABLE"));
    let existing = TableTarget {
        data_only: true,
        ..target("public", "orders", "public", "orders_old")
    };
    let sql = act_as_owner_sql(&existing, Some("bob"));
    assert!(!sql.contains("ALTER TABLE"), "{sql}");
    assert!(sql.contains("set_config('role'"), "{sql}");
}

#[test]
fn literals() {
    assert_eq!(quote_literal("a'b"), "'a''b'");
    assert_eq!(quote_literal("a\\'b"), "E'a\\\\''b'");
    assert!(relation_facts_query("s'x", "t").contains("nspname = 's''x'"));
}

#[test]
fn data_only_check_quotes_and_picks_a_free_tag() {
    let mut t = target("public", "orders", "public", "$backup_ext_0$");
    t.data_only = true;
    let sql = data_only_check_sql(&t);
    assert!(
        sql.starts_with("SELECT pg_catalog.set_config('search_path', '', false);\nLOCK TABLE \"public\".\"$backup_ext_0$\" IN SHARE ROW EXCLUSIVE MODE;\n")
    );
    assert!(sql.contains("DO $backup_ext_1$BEGIN"), "{sql}");
    assert!(sql.ends_with("END$backup_ext_1$;\n"), "{sql}");
}
