//! The database a restore writes into: how it is created, who owns it and who may connect
//! to it. The statements are built here from names only, each quoted as an identifier.

/// A database privilege as `aclexplode()` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseGrant {
    /// `None` for PUBLIC.
    pub grantee: Option<String>,
    pub privilege: String,
}

/// What the source database's access list says, for a restore into a new database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAccess {
    /// The source still exists with the default access list (PUBLIC may connect).
    Default,
    /// The source exists with these explicit grants (its owner's own left out).
    Grants(Vec<DatabaseGrant>),
    /// The source is gone (or the backup holds no database): only the new owner connects.
    Unknown,
}

const DATABASE_PRIVILEGES: [&str; 3] = ["CREATE", "CONNECT", "TEMPORARY"];

/// `"name"`, with embedded double quotes doubled: safe for any role or database name.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `CREATE DATABASE` from template0, owned by `owner` when given (else by the connecting
/// role). It cannot run inside a transaction block, so it is a statement of its own.
pub fn create_database_sql(name: &str, owner: Option<&str>) -> String {
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    if let Some(owner) = owner {
        sql.push_str(&format!(" OWNER {}", quote_ident(owner)));
    }
    sql
}

/// The GRANT / REVOKE statements that give a new database the access rules of its source;
/// `None` when the defaults already match.
pub fn access_sql(name: &str, access: &SourceAccess) -> Option<String> {
    let db = quote_ident(name);
    let revoke = format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC;");
    match access {
        SourceAccess::Default => None,
        SourceAccess::Unknown => Some(revoke),
        SourceAccess::Grants(grants) => {
            let mut sql = revoke;
            for g in grants {
                // Only the three database privileges; anything else is not ours to copy.
                let Some(privilege) = DATABASE_PRIVILEGES
                    .iter()
                    .find(|p| p.eq_ignore_ascii_case(&g.privilege))
                else {
                    continue;
                };
                let grantee = g
                    .grantee
                    .as_deref()
                    .map(quote_ident)
                    .unwrap_or_else(|| "PUBLIC".into());
                sql.push_str(&format!(
                    " GRANT {privilege} ON DATABASE {db} TO {grantee};"
                ));
            }
            Some(sql)
        }
    }
}

/// `SET ROLE` to the requester, the first statement of a psql restore acting for a
/// non-superuser.
pub fn set_role_sql(role: &str) -> String {
    format!("SET ROLE {}", quote_ident(role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_ident("x\"; DROP DATABASE y; --"),
            "\"x\"\"; DROP DATABASE y; --\""
        );
        assert_eq!(quote_ident("ünï code"), "\"ünï code\"");
    }

    #[test]
    fn create_statement() {
        assert_eq!(
            create_database_sql("new", None),
            "CREATE DATABASE \"new\" TEMPLATE template0"
        );
        assert_eq!(
            create_database_sql("n\"x", Some("mal\"lory")),
            "CREATE DATABASE \"n\"\"x\" TEMPLATE template0 OWNER \"mal\"\"lory\""
        );
    }

    #[test]
    fn access_rules() {
        assert_eq!(access_sql("d", &SourceAccess::Default), None);
        assert_eq!(
            access_sql("d", &SourceAccess::Unknown).unwrap(),
            "REVOKE ALL ON DATABASE \"d\" FROM PUBLIC;"
        );
        let grants = SourceAccess::Grants(vec![
            DatabaseGrant {
                grantee: Some("alice".into()),
                privilege: "CONNECT".into(),
            },
            DatabaseGrant {
                grantee: None,
                privilege: "TEMPORARY".into(),
            },
            DatabaseGrant {
                grantee: Some("bob".into()),
                privilege: "CONNECT; DROP ROLE x".into(),
            },
        ]);
        assert_eq!(
            access_sql("d", &grants).unwrap(),
            "REVOKE ALL ON DATABASE \"d\" FROM PUBLIC; \
             GRANT CONNECT ON DATABASE \"d\" TO \"alice\"; \
             GRANT TEMPORARY ON DATABASE \"d\" TO PUBLIC;"
        );
    }

    #[test]
    fn set_role() {
        assert_eq!(set_role_sql("we\"ird"), "SET ROLE \"we\"\"ird\"");
    }
}
