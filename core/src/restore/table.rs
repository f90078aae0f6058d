//! Restoring one table beside the live one: which archive entries hold its definition and
//! data, and how the statements pg_restore prints for them are rewritten to create a new
//! table under another name.
//!
//! pg_restore cannot rename what it restores, so its script is rewritten here. The script is
//! not edited as text: it is read token by token (strings, dollar quotes, comments and quoted
//! identifiers are skipped as units), and only the tokens of the table's own schema-qualified
//! name and of the index and constraint names a statement creates are replaced. Everything
//! else (column definitions, CHECK expressions, index definitions) passes unchanged. What
//! would reach beyond the new table is left out:
//! - defaults that call `nextval()`: they would make the new table draw from the live
//!   table's sequence (and pg_dump only writes them for serial columns, together with an
//!   `OWNED BY` that would take the sequence over). Identity columns are declared by the
//!   sequence's archive entry, which is not restored either. The restored column keeps its
//!   values and its NOT NULL, without a default.
//! - foreign keys, triggers, rules, policies, comments, privileges and owners (their entries
//!   are not selected); `CLUSTER ON` and `REPLICA IDENTITY USING INDEX` (they name an index).
//! - a table that inherits from or is a partition of another is refused: restoring it would
//!   change what the live parent shows.

use crate::error::{ErrorKind, RequestError};
use crate::restore::target::quote_ident;
use crate::restore::toc::TocEntry;
use serde::{Deserialize, Serialize};

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes).
pub const MAX_NAME_BYTES: usize = 63;

/// What `restore_table()` restores, and where to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableTarget {
    pub schema: String,
    pub name: String,
    pub into_schema: String,
    pub into_name: String,
    /// Load the rows into an existing empty table instead of creating one.
    pub data_only: bool,
    /// Appended to the names of the indexes and constraints the new table gets.
    pub suffix: String,
}

impl TableTarget {
    /// Checks every name (see [`validate_relation_name`]).
    pub fn validate(&self) -> Result<(), RequestError> {
        validate_relation_name("schema_name", &self.schema)?;
        validate_relation_name("table_name", &self.name)?;
        validate_relation_name("into_schema", &self.into_schema)?;
        validate_relation_name("into_name", &self.into_name)?;
        if !self.data_only && self.into_schema == self.schema && self.into_name == self.name {
            return Err(RequestError::new(
                ErrorKind::DuplicateTable,
                format!(
                    "into_name {} is the table being restored",
                    quote_ident(&self.name)
                ),
                "restore_table() never replaces the live table; choose another into_name or \
                 into_schema, or leave into_name NULL.",
            ));
        }
        Ok(())
    }

    /// The new table's name, schema-qualified and quoted.
    pub fn into_qualified(&self) -> String {
        qualified(&self.into_schema, &self.into_name)
    }
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// A schema or table name as stored in the catalog: 1 to 63 bytes, no NUL.
pub fn validate_relation_name(what: &str, name: &str) -> Result<(), RequestError> {
    let hint = "Give the name as the catalog stores it (not quoted), 1 to 63 bytes.";
    if name.is_empty() {
        return Err(RequestError::invalid(format!("{what} is empty"), hint));
    }
    if name.contains('\0') {
        return Err(RequestError::invalid(
            format!("{what} contains a NUL character"),
            hint,
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(RequestError::new(
            ErrorKind::NameTooLong,
            format!("{what} {} is {} bytes long", quote_ident(name), name.len()),
            hint,
        ));
    }
    Ok(())
}

/// The suffix the restored table's default name and its indexes' names get.
pub fn restored_suffix(backup_id: i64) -> String {
    format!("_restored_{backup_id}")
}

/// `<table>_restored_<backup_id>`, refused when longer than 63 bytes (the server would
/// truncate it, and the truncated name could be another table's).
pub fn default_into_name(table: &str, backup_id: i64) -> Result<String, RequestError> {
    let name = format!("{table}{}", restored_suffix(backup_id));
    if name.len() > MAX_NAME_BYTES {
        return Err(RequestError::new(
            ErrorKind::NameTooLong,
            format!(
                "the default name {} is {} bytes long, more than the 63 PostgreSQL keeps",
                quote_ident(&name),
                name.len()
            ),
            "Pass into_name => '...' with a shorter name.",
        ));
    }
    Ok(name)
}

/// `name` with `suffix`, the name shortened (at a character boundary) so that the whole
/// fits in 63 bytes.
pub fn with_suffix(name: &str, suffix: &str) -> String {
    let room = MAX_NAME_BYTES.saturating_sub(suffix.len());
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &name[..end])
}

/// The archive entries of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableEntries {
    /// The TABLE entry.
    pub table: i64,
    /// The TABLE DATA entry; None for a table whose rows were not dumped.
    pub data: Option<i64>,
    /// The TABLE entry and the entries that may belong to it (DEFAULT, CONSTRAINT, CHECK
    /// CONSTRAINT, INDEX of the same schema); which of them do is decided on their statements.
    pub definitions: Vec<i64>,
    /// The role that owned the table where the backup was made.
    pub owner: Option<String>,
}

/// Kinds of entries whose statements may define part of a table.
const DEFINITION_KINDS: [&str; 4] = ["DEFAULT", "CONSTRAINT", "CHECK CONSTRAINT", "INDEX"];

/// Finds the table's entries in a parsed `pg_restore --list`; None when the archive has no
/// table of that schema and name.
pub fn table_entries(entries: &[TocEntry], schema: &str, name: &str) -> Option<TableEntries> {
    let in_schema = |e: &&TocEntry| e.schema.as_deref() == Some(schema);
    // `pg_restore --list` does not quote: an owner whose name has spaces leaves its first
    // words at the end of the name (`orders Ré` + `Owner`). The exact name comes first.
    let of_kind = |kind: &str| {
        let candidates = || entries.iter().filter(in_schema).filter(|e| e.kind == kind);
        candidates().find(|e| e.name == name).or_else(|| {
            candidates().find(|e| {
                e.owner.is_some()
                    && e.name
                        .strip_prefix(name)
                        .is_some_and(|r| r.starts_with(' '))
            })
        })
    };
    let table = of_kind("TABLE")?;
    let owner = match table.name.strip_prefix(name) {
        Some(words) if !words.is_empty() => table
            .owner
            .as_ref()
            .map(|last| format!("{} {last}", &words[1..])),
        _ => table.owner.clone(),
    };
    let data = of_kind("TABLE DATA").map(|e| e.toc_id);
    let mut definitions = vec![table.toc_id];
    definitions.extend(
        entries
            .iter()
            .filter(in_schema)
            .filter(|e| DEFINITION_KINDS.contains(&e.kind.as_str()))
            .map(|e| e.toc_id),
    );
    Some(TableEntries {
        table: table.toc_id,
        data,
        definitions,
        owner,
    })
}

/// One lexical unit of a SQL script.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An identifier or keyword: its value (unquoted ones folded to lower case, as the server
    /// does) and whether it was quoted.
    Ident(String, bool),
    Symbol(char),
    /// Literals, numbers, operators: passed through.
    Other,
    /// A psql backslash command line (`\restrict ...`).
    Meta,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

pub(crate) fn is_ident_char(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '$'
}

/// Splits SQL text into tokens. Unterminated strings or comments are an error.
fn tokenize(sql: &str) -> Result<Vec<Token>, String> {
    let b = sql.as_bytes();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    // Whether only whitespace and comments have come since the last `;` (a psql command
    // line can only start there).
    let mut statement_start = true;
    let char_at = |i: usize| sql[i..].chars().next().unwrap_or('\0');
    while i < b.len() {
        let c = char_at(i);
        let start = i;
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        if sql[i..].starts_with("--") {
            i = sql[i..].find('\n').map_or(b.len(), |n| i + n + 1);
            continue;
        }
        if sql[i..].starts_with("/*") {
            let mut depth = 0usize;
            loop {
                if i >= b.len() {
                    return Err("unterminated comment".into());
                }
                if sql[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if sql[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += char_at(i).len_utf8();
                }
            }
            continue;
        }
        let tok = if c == '\\' && statement_start {
            i = sql[i..].find('\n').map_or(b.len(), |n| i + n);
            Tok::Meta
        } else if c == '\'' {
            i = string_end(sql, i + 1, false)?;
            Tok::Other
        } else if (c == 'E' || c == 'e') && sql[i + 1..].starts_with('\'') {
            i = string_end(sql, i + 2, true)?;
            Tok::Other
        } else if c == '"' {
            let mut value = String::new();
            i += 1;
            loop {
                let Some(n) = sql[i..].find('"') else {
                    return Err("unterminated quoted identifier".into());
                };
                value.push_str(&sql[i..i + n]);
                i += n + 1;
                if sql[i..].starts_with('"') {
                    value.push('"');
                    i += 1;
                } else {
                    break;
                }
            }
            Tok::Ident(value, true)
        } else if c == '$' && dollar_tag(sql, i).is_some() {
            let tag = dollar_tag(sql, i).unwrap_or_default();
            let body = i + tag.len();
            let Some(n) = sql[body..].find(tag) else {
                return Err("unterminated dollar-quoted string".into());
            };
            i = body + n + tag.len();
            Tok::Other
        } else if is_ident_start(c) {
            while i < b.len() && is_ident_char(char_at(i)) {
                i += char_at(i).len_utf8();
            }
            Tok::Ident(sql[start..i].to_ascii_lowercase(), false)
        } else if c.is_ascii_digit() {
            while i < b.len() && (char_at(i).is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            Tok::Other
        } else {
            i += c.len_utf8();
            Tok::Symbol(c)
        };
        statement_start = tok == Tok::Symbol(';') || tok == Tok::Meta;
        out.push(Token { tok, start, end: i });
    }
    Ok(out)
}

/// The end (past the closing quote) of a string literal whose body starts at `i`.
fn string_end(sql: &str, mut i: usize, backslashes: bool) -> Result<usize, String> {
    let b = sql.as_bytes();
    while i < b.len() {
        match b[i] {
            b'\\' if backslashes => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("unterminated string literal".into())
}

/// `$tag$` starting at `i`, if there is one.
pub(crate) fn dollar_tag(sql: &str, i: usize) -> Option<&str> {
    let rest = &sql[i + 1..];
    let n = rest.find('$')?;
    let tag = &rest[..n];
    let ok = tag.is_empty()
        || (tag.chars().next().is_some_and(is_ident_start)
            && tag.chars().all(|c| is_ident_start(c) || c.is_ascii_digit()));
    ok.then(|| &sql[i..i + n + 2])
}

/// The statements of a script (tokens up to each `;`, the `;` left out), without psql
/// command lines.
fn statements(tokens: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut from = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.tok {
            Tok::Symbol(';') => {
                if i > from {
                    out.push(&tokens[from..i]);
                }
                from = i + 1;
            }
            Tok::Meta => from = i + 1,
            _ => {}
        }
    }
    if from < tokens.len() {
        out.push(&tokens[from..]);
    }
    out
}

/// Whether token `i` is the unquoted keyword `kw`.
fn is_kw(t: &[Token], i: usize, kw: &str) -> bool {
    matches!(t.get(i), Some(Token { tok: Tok::Ident(v, false), .. }) if v == kw)
}

/// Whether tokens `i..i+3` are `schema.name`.
fn is_name_at(t: &[Token], i: usize, schema: &str, name: &str) -> bool {
    matches!(
        (t.get(i).map(|x| &x.tok), t.get(i + 1).map(|x| &x.tok), t.get(i + 2).map(|x| &x.tok)),
        (Some(Tok::Ident(s, _)), Some(Tok::Symbol('.')), Some(Tok::Ident(n, _))) if s == schema && n == name
    )
}

fn ident_at(t: &[Token], i: usize) -> Option<&str> {
    match t.get(i).map(|x| &x.tok) {
        Some(Tok::Ident(v, _)) => Some(v.as_str()),
        _ => None,
    }
}

/// What a statement of the script is, for the table being restored.
enum Statement {
    /// `SET ...` or `SELECT pg_catalog.set_config(...)`: the session the script expects.
    Setting,
    /// `CREATE TABLE schema.name`; the index of the name's first token.
    CreateTable(usize),
    /// `ALTER TABLE [ONLY] schema.name ...`.
    AlterTable(usize),
    /// `CREATE [UNIQUE] INDEX idx ON [ONLY] schema.name`; indexes of the index's name and of
    /// the table's.
    CreateIndex(usize, usize),
    /// Anything else, or about another table.
    Other,
}

fn classify(t: &[Token], schema: &str, name: &str) -> Statement {
    if is_kw(t, 0, "set") {
        return Statement::Setting;
    }
    if is_kw(t, 0, "select")
        && t.iter()
            .any(|x| x.tok == Tok::Ident("set_config".into(), false))
    {
        return Statement::Setting;
    }
    if is_kw(t, 0, "create") {
        let mut i = 1;
        if is_kw(t, i, "unlogged") {
            i += 1;
        }
        if is_kw(t, i, "table") && is_name_at(t, i + 1, schema, name) {
            return Statement::CreateTable(i + 1);
        }
        let mut i = 1;
        if is_kw(t, i, "unique") {
            i += 1;
        }
        if is_kw(t, i, "index") && ident_at(t, i + 1).is_some() && is_kw(t, i + 2, "on") {
            let mut at = i + 3;
            if is_kw(t, at, "only") {
                at += 1;
            }
            if is_name_at(t, at, schema, name) {
                return Statement::CreateIndex(i + 1, at);
            }
        }
        return Statement::Other;
    }
    if is_kw(t, 0, "alter") && is_kw(t, 1, "table") {
        let at = if is_kw(t, 2, "only") { 3 } else { 2 };
        if is_name_at(t, at, schema, name) {
            return Statement::AlterTable(at);
        }
    }
    Statement::Other
}

/// The source text of a statement with some token ranges replaced.
fn rewritten(sql: &str, t: &[Token], mut replace: Vec<(usize, usize, String)>) -> String {
    replace.sort_by_key(|r| r.0);
    let (first, last) = (t[0].start, t[t.len() - 1].end);
    let mut out = String::new();
    let mut at = first;
    for (from, to, with) in replace {
        out.push_str(&sql[at..t[from].start]);
        out.push_str(&with);
        at = t[to].end;
    }
    out.push_str(&sql[at..last]);
    out.push(';');
    out
}

/// The statements that create the new table, from the script pg_restore prints for the
/// entries of [`TableEntries::definitions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDefinition {
    /// Session settings, then `CREATE TABLE` and the statements that shape its columns; run
    /// before the rows are loaded.
    pub before_data: Vec<String>,
    /// Primary key, unique and exclusion constraints, indexes; run after the rows are loaded.
    pub after_data: Vec<String>,
    /// Columns whose `nextval()` default was left out.
    pub dropped_defaults: Vec<String>,
}

impl TableDefinition {
    pub fn before_script(&self) -> String {
        script(&self.before_data)
    }

    pub fn after_script(&self) -> String {
        script(&self.after_data)
    }
}

fn script(statements: &[String]) -> String {
    statements.iter().map(|s| format!("{s}\n")).collect()
}

/// Rewrites pg_restore's script for the table's definition entries into the statements that
/// create `target.into_qualified()` (see the module's comment). `skip` lists session
/// parameters the server does not know, whose `SET` is left out.
pub fn table_definition(
    script: &str,
    target: &TableTarget,
    skip: &[String],
) -> Result<TableDefinition, String> {
    let tokens = tokenize(script)?;
    let (schema, name) = (target.schema.as_str(), target.name.as_str());
    let into = target.into_qualified();
    let mut def = TableDefinition::default();
    let mut created = false;
    for t in statements(&tokens) {
        match classify(t, schema, name) {
            Statement::Setting => {
                let unknown = is_kw(t, 0, "set")
                    && ident_at(t, 1).is_some_and(|n| skip.iter().any(|s| s == n));
                if !unknown {
                    def.before_data.push(rewritten(script, t, vec![]));
                }
            }
            Statement::CreateTable(at) => {
                let mut depth = 0i32;
                for (i, x) in t.iter().enumerate() {
                    match x.tok {
                        Tok::Symbol('(') => depth += 1,
                        Tok::Symbol(')') => depth -= 1,
                        _ if depth == 0
                            && (is_kw(t, i, "inherits")
                                || (is_kw(t, i, "partition") && is_kw(t, i + 1, "of"))) =>
                        {
                            return Err(format!(
                                "table {} inherits from another table or is a partition; \
                                 restore_table() restores only stand-alone and partitioned \
                                 parent tables",
                                qualified(schema, name)
                            ));
                        }
                        _ => {}
                    }
                }
                created = true;
                def.before_data
                    .push(rewritten(script, t, vec![(at, at + 2, into.clone())]));
            }
            Statement::AlterTable(at) => {
                let calls_nextval = t.windows(2).any(|w| {
                    w[0].tok == Tok::Ident("nextval".into(), false) && w[1].tok == Tok::Symbol('(')
                });
                if calls_nextval {
                    let column = (0..t.len())
                        .find(|&i| is_kw(t, i, "column"))
                        .and_then(|i| ident_at(t, i + 1))
                        .unwrap_or("?");
                    def.dropped_defaults.push(column.to_string());
                    continue;
                }
                if (0..t.len()).any(|i| is_kw(t, i, "cluster") || is_kw(t, i, "replica")) {
                    continue;
                }
                let mut replace = vec![(at, at + 2, into.clone())];
                let constraint = (0..t.len())
                    .find(|&i| is_kw(t, i, "add") && is_kw(t, i + 1, "constraint"))
                    .map(|i| i + 2);
                if let Some(c) = constraint {
                    let Some(old) = ident_at(t, c) else {
                        return Err("ADD CONSTRAINT without a name".into());
                    };
                    replace.push((c, c, quote_ident(&with_suffix(old, &target.suffix))));
                    def.after_data.push(rewritten(script, t, replace));
                } else {
                    def.before_data.push(rewritten(script, t, replace));
                }
            }
            Statement::CreateIndex(idx, at) => {
                let old = ident_at(t, idx).unwrap_or_default();
                let replace = vec![
                    (idx, idx, quote_ident(&with_suffix(old, &target.suffix))),
                    (at, at + 2, into.clone()),
                ];
                def.after_data.push(rewritten(script, t, replace));
            }
            Statement::Other => {}
        }
    }
    if !created {
        return Err(format!(
            "the archive's definitions hold no CREATE TABLE {}",
            qualified(schema, name)
        ));
    }
    Ok(def)
}

/// A `COPY schema.name (...) FROM stdin;` line of the table, naming the new table instead;
/// None when the line is not a COPY of that table.
pub fn copy_line_into(line: &str, schema: &str, name: &str, into: &str) -> Option<String> {
    let rest = line.strip_prefix("COPY ")?;
    let tokens = tokenize(rest).ok()?;
    if !is_name_at(&tokens, 0, schema, name) {
        return None;
    }
    Some(format!("COPY {into}{}", &rest[tokens[2].end..]))
}

/// Where the rows of a COPY are loaded instead: the table's name and the new one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInto {
    pub schema: String,
    pub name: String,
    /// Schema-qualified and quoted.
    pub into: String,
}

/// A string literal for any text: quotes doubled; with backslashes, an `E''` literal with
/// them doubled, so that the value is the same whatever `standard_conforming_strings` says.
pub fn quote_literal(value: &str) -> String {
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// A dollar-quote tag that does not occur in `body`.
fn dollar_quote_for(body: &str) -> String {
    (0..)
        .map(|n| format!("$backup_ext_{n}$"))
        .find(|tag| !body.contains(tag.as_str()))
        .unwrap_or_default()
}

/// For a superuser's restore, run after the definition (or the `data_only` check): the new
/// table goes to `owner`, the role that owned it in the archive (None: no such role here, and
/// the table stays the superuser's), and the rows and the indexes load as the table's owner.
/// A CHECK constraint, a generated column or an index expression is code its owner wrote: it
/// never runs as a superuser (pg_restore too gives objects their owners before it indexes
/// them). Stops the script when that owner may not use the target schema.
pub fn act_as_owner_sql(target: &TableTarget, owner: Option<&str>) -> String {
    let into = target.into_qualified();
    let table = quote_literal(&into);
    let owner_oid = format!(
        "(SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = {table}::pg_catalog.regclass)"
    );
    let mut sql = String::new();
    if let (false, Some(owner)) = (target.data_only, owner) {
        sql += &format!("ALTER TABLE {into} OWNER TO {};\n", quote_ident(owner));
    }
    let body = format!(
        "BEGIN IF NOT pg_catalog.has_schema_privilege({owner_oid}, {schema}, 'USAGE') THEN \
         RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = pg_catalog.format('role %s, the \
         owner of %s, may not use schema %s', {owner_oid}::pg_catalog.regrole, \
         {table}::pg_catalog.regclass, \
         pg_catalog.quote_ident({schema})), HINT = 'A restored table''s rows and indexes \
         load as its owner, never as a superuser: grant that role USAGE on the schema, or \
         restore into a schema it may use.'; END IF; END",
        schema = quote_literal(&target.into_schema),
    );
    let tag = dollar_quote_for(&body);
    sql += &format!(
        "DO {tag}{body}{tag};\n\
         SELECT pg_catalog.set_config('role', r.rolname, false) FROM pg_catalog.pg_roles r \
         WHERE r.oid = {owner_oid};\n"
    );
    sql
}

/// For `data_only`: locks the existing table against writes and stops the script (under
/// ON_ERROR_STOP) when it holds a row.
pub fn data_only_check_sql(target: &TableTarget) -> String {
    let into = target.into_qualified();
    let body = format!(
        "BEGIN IF EXISTS (SELECT FROM {into}) THEN RAISE EXCEPTION USING ERRCODE = '55000', \
         MESSAGE = {} || ' is not empty', HINT = 'data_only loads rows only into an empty \
         table; empty it or restore into a new table.'; END IF; END",
        quote_literal(&into)
    );
    let tag = dollar_quote_for(&body);
    format!(
        "SELECT pg_catalog.set_config('search_path', '', false);\n\
         LOCK TABLE {into} IN SHARE ROW EXCLUSIVE MODE;\nDO {tag}{body}{tag};\n"
    )
}

/// A query whose one row says whether the schema exists, the relkind of the relation
/// `schema.name` (empty when there is none) and, for a table, whether it holds a row. Run
/// with `search_path = pg_catalog`.
pub fn relation_facts_query(schema: &str, name: &str) -> String {
    let (s, n) = (quote_literal(schema), quote_literal(name));
    format!(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = {s}), \
         coalesce((SELECT c.relkind::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace \
         WHERE ns.nspname = {s} AND c.relname = {n}), '')"
    )
}

#[cfg(test)]
mod tests;
