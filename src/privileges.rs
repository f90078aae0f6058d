//! Who may ask for what. The SQL functions open to non-superusers are SECURITY INVOKER: each
//! starts with [`enter`], which notes the calling role (`current_user`, so a `SET ROLE` or an
//! enclosing SECURITY DEFINER function counts) and only then switches to the extension's owner
//! for the catalog work, until the function returns. Every check here is about that noted role.
//! (A SECURITY DEFINER function could only ask for the *outer* user, which is the superuser when
//! a superuser's session runs someone else's function.) Inside a security-restricted operation
//! (an index expression evaluated by ANALYZE, a materialized view refresh) nothing is allowed.
//!
//! The rules: superusers may do everything. Anyone else needs CONNECT on a database to back
//! it up, inspect, verify or restore its backups, and must own a database to restore into it;
//! globals (roles, tablespaces) belong to superusers alone; a job may be cancelled by the
//! role it acts for and by members of that role.

use pgrx::prelude::*;

use crate::error::{BackupError, OrReport};

/// The role on whose behalf a function was called.
pub struct Caller {
    pub name: String,
    pub superuser: bool,
    createdb: bool,
}

/// The extension owner's rights, for as long as this lives.
pub struct Elevated {
    user: pg_sys::Oid,
    context: i32,
}

impl Drop for Elevated {
    fn drop(&mut self) {
        // An ERROR also gets here (pgrx unwinds); transaction abort would restore it anyway.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// The calling role, and the switch to the extension owner for the rest of the call.
pub fn enter() -> (Caller, Elevated) {
    if unsafe { pg_sys::InSecurityRestrictedOperation() } {
        denied(
            "backup_ext functions cannot be called during a security-restricted operation".into(),
            "They are refused inside index expressions, materialized view refreshes and the like.",
        );
    }
    let caller = caller();
    let owner = Spi::get_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'backup_ext'",
    )
    .or_report()
    .unwrap_or(pg_sys::BOOTSTRAP_SUPERUSERID.into());
    let mut user = pg_sys::Oid::INVALID;
    let mut context = 0;
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    (caller, Elevated { user, context })
}

fn caller() -> Caller {
    let oid = unsafe { pg_sys::GetUserId() };
    let (name, createdb) = Spi::get_two_with_args::<String, bool>(
        "SELECT rolname::text, rolcreatedb FROM pg_catalog.pg_roles WHERE oid = $1",
        &[oid.into()],
    )
    .or_report();
    Caller {
        name: name.unwrap_or_default(),
        superuser: unsafe { pg_sys::superuser_arg(oid) },
        createdb: createdb.unwrap_or(false),
    }
}

fn denied(message: String, hint: &str) -> ! {
    BackupError::PermissionDenied {
        message,
        hint: hint.into(),
    }
    .report()
}

impl Caller {
    /// Raises 42501 with this message and hint.
    pub fn deny(&self, message: String, hint: &str) -> ! {
        denied(message, hint)
    }

    pub fn require_superuser(&self, what: &str) {
        self.require_superuser_for(
            what,
            "Roles and tablespaces belong to the whole cluster; ask a superuser.",
        );
    }

    /// Raises 42501 with `hint` unless the caller is a superuser.
    pub fn require_superuser_for(&self, what: &str, hint: &str) {
        if !self.superuser {
            denied(format!("only superusers may {what}"), hint);
        }
    }

    /// A yes/no question about the caller (`$1`) and one object (`$2`); no row, NULL or an
    /// error all mean no.
    fn holds(&self, sql: &str, object: &str) -> bool {
        Spi::get_one_with_args::<bool>(sql, &[self.name.as_str().into(), object.into()])
            .unwrap_or(None)
            .unwrap_or(false)
    }

    fn has_connect(&self, dbname: &str) -> bool {
        self.holds(
            "SELECT pg_catalog.has_database_privilege($1::name, d.oid, 'CONNECT')
               FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) $2::name",
            dbname,
        )
    }

    /// CONNECT on `dbname`: the right to read it, and so its backups.
    pub fn require_connect(&self, dbname: &str, what: &str) {
        if !self.superuser && !self.has_connect(dbname) {
            denied(
                format!(
                    "role \"{}\" may not {what}: it has no CONNECT privilege on database \"{dbname}\"",
                    self.name
                ),
                "Backups of a database are open to the roles that may connect to it (or a superuser): GRANT CONNECT ON DATABASE ... TO ...",
            );
        }
    }

    /// The backup's database must be readable by the caller; globals need a superuser.
    pub fn require_backup_access(&self, of_database: bool, database: Option<&str>, what: &str) {
        match (of_database, database) {
            (true, Some(db)) => self.require_connect(db, what),
            _ => self.require_superuser(&format!("{what} a globals backup")),
        }
    }

    /// A restore that creates a database gives it to the caller: only to roles that may
    /// create databases themselves.
    pub fn require_createdb(&self, dbname: &str) {
        if !self.superuser && !self.createdb {
            denied(
                format!(
                    "role \"{}\" may not restore into a new database \"{dbname}\": it lacks CREATEDB",
                    self.name
                ),
                "The new database would belong to it; ALTER ROLE ... CREATEDB, or restore into a database it owns (create_db => false).",
            );
        }
    }

    /// Restoring into an existing database replaces what is in it: its owner's call.
    pub fn require_owner(&self, dbname: &str) {
        if self.superuser {
            return;
        }
        let owns = self.holds(
            "SELECT pg_catalog.pg_has_role($1::name, d.datdba, 'MEMBER')
               FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) $2::name",
            dbname,
        );
        if !owns {
            denied(
                format!(
                    "role \"{}\" may not restore into database \"{dbname}\": it is not its owner",
                    self.name
                ),
                "Restore into a new database (create_db => true), or ask the owner or a superuser.",
            );
        }
    }

    /// Whether the caller acts for `role` (is it, or a member of it).
    pub fn acts_for(&self, role: &str) -> bool {
        self.superuser
            || self.holds(
                "SELECT pg_catalog.pg_has_role($1::name, r.oid, 'MEMBER')
                   FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $2::name",
                role,
            )
    }

    /// The visibility rule of the catalog's row security, for functions that read it as the
    /// extension's owner: CONNECT on the job's database (globals: superusers), or the job
    /// acts for the caller.
    pub fn may_see_job(&self, database: Option<&str>, run_as: Option<&str>) -> bool {
        self.superuser
            || run_as.is_some_and(|r| r == self.name)
            || database.is_some_and(|db| self.has_connect(db))
    }

    pub fn require_acts_for(&self, role: &str, job_id: i64) {
        if !self.acts_for(role) {
            denied(
                format!(
                    "role \"{}\" may not cancel job {job_id}: it runs for role \"{role}\"",
                    self.name
                ),
                "A job can be cancelled by the role it runs for, members of that role, and superusers.",
            );
        }
    }
}
