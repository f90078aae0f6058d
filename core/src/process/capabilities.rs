//! What the client tools in `bin_dir` can do, asked of the binaries themselves rather than
//! worked out from version numbers: a pg_dump built without zstd refuses zstd whatever its
//! version says, and which archive versions a pg_restore reads is decided by its build.
//!
//! Both probes need no server:
//! - pg_dump checks `--compress=METHOD` before it connects, so a run against a socket that
//!   does not exist ends with a connection error when the method is accepted, and with the
//!   option's error when it is not;
//! - pg_restore checks an archive's header version first, so a header-only custom archive of
//!   version 1.N is refused with "unsupported version" exactly when this pg_restore cannot read
//!   version 1.N archives.

use crate::dump::compress::{CompressionMethod, DumpTool};
use crate::format::Format;
use crate::process::version::parse_tool_version;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// An archive format version as pg_dump writes it in the header (`K_VERS_1_15` is 1.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ArchiveVersion(pub u8, pub u8);

impl fmt::Display for ArchiveVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl ArchiveVersion {
    /// The first PostgreSQL major whose pg_dump writes this version, as far as known: the
    /// tools of that major or later read it.
    pub fn first_writer(self) -> Option<u32> {
        match self {
            ArchiveVersion(1, 0..=14) => Some(15),
            ArchiveVersion(1, 15) => Some(16),
            ArchiveVersion(1, 16) => Some(17),
            _ => None,
        }
    }

    /// Which tools read this version, for a hint.
    pub fn readers(self) -> String {
        match self.first_writer() {
            Some(major) => format!("pg_restore {major} or later"),
            None => format!("a pg_restore that reads archive version {self}"),
        }
    }
}

/// What the tools in one `bin_dir` can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCapabilities {
    pub dump: DumpTool,
    /// `pg_dump --version`, e.g. `pg_dump (PostgreSQL) 17.11`.
    pub dump_version: String,
    pub restore_major: u32,
    pub restore_version: String,
    /// The newest archive version this pg_restore reads.
    pub reads_up_to: ArchiveVersion,
}

/// The highest minor archive version tried; far beyond any pg_dump of today.
const MAX_PROBED_MINOR: u8 = 40;
/// Every archive version since 1.12 (PostgreSQL 11) is read by every supported pg_restore.
const SURELY_READ: ArchiveVersion = ArchiveVersion(1, 12);

fn run_quietly(program: &Path, args: &[&str]) -> io::Result<Output> {
    Command::new(program)
        .args(args)
        // Nothing from the server's environment steers the probe (PGHOST, PGOPTIONS, ...).
        .env_clear()
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
}

/// `(major, version line)` of `<program> --version`.
pub fn version_of(program: &Path) -> Result<(u32, String), String> {
    let out = run_quietly(program, &["--version"])
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_tool_version(&text).ok_or_else(|| {
        format!(
            "unexpected output from {} --version: {}",
            program.display(),
            text.trim()
        )
    })
}

/// Whether `pg_dump --compress=<method>` gets past option checking.
fn dump_accepts(pg_dump: &Path, method: &str, probe_dir: &Path) -> Result<bool, String> {
    let socket_dir = probe_dir.join("no-server-here");
    let out = run_quietly(
        pg_dump,
        &[
            "--format=custom",
            &format!("--compress={method}"),
            "--file=/dev/null",
            &format!("--host={}", socket_dir.display()),
            "--port=1",
            "--no-password",
            "--dbname=postgres",
        ],
    )
    .map_err(|e| format!("cannot run {}: {e}", pg_dump.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("connection to server") || stderr.contains("could not connect") {
        return Ok(true);
    }
    if out.status.success() {
        return Err(format!(
            "{} --compress={method} succeeded without a server",
            pg_dump.display()
        ));
    }
    Ok(false)
}

/// Whether pg_restore reads an archive of `version`; `probe_dir` holds the header-only file.
fn restore_reads(
    pg_restore: &Path,
    version: ArchiveVersion,
    probe_dir: &Path,
) -> Result<bool, String> {
    let file = probe_dir.join(format!("header-{version}.dump"));
    let mut header = b"PGDMP".to_vec();
    // major, minor, revision, int size, offset size, format (1 = custom), then padding.
    header.extend_from_slice(&[version.0, version.1, 0, 4, 8, 1]);
    header.extend_from_slice(&[0; 64]);
    std::fs::write(&file, &header).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let arg = file.to_string_lossy().into_owned();
    let out = run_quietly(pg_restore, &["--list", &arg])
        .map_err(|e| format!("cannot run {}: {e}", pg_restore.display()))?;
    let _ = std::fs::remove_file(&file);
    Ok(!String::from_utf8_lossy(&out.stderr).contains("unsupported version"))
}

/// Probes pg_dump and pg_restore in `bin_dir`; `probe_dir` is a private directory for the
/// header files (nothing is left in it).
pub fn probe(bin_dir: &Path, probe_dir: &Path) -> Result<ToolCapabilities, String> {
    let pg_dump = bin_dir.join("pg_dump");
    let pg_restore = bin_dir.join("pg_restore");
    let (major, dump_version) = version_of(&pg_dump)?;
    let (restore_major, restore_version) = version_of(&pg_restore)?;
    let mut dump = DumpTool {
        major,
        ..DumpTool::default()
    };
    if major >= 16 {
        dump.gzip = dump_accepts(&pg_dump, "gzip", probe_dir)?;
        dump.lz4 = dump_accepts(&pg_dump, "lz4", probe_dir)?;
        dump.zstd = dump_accepts(&pg_dump, "zstd", probe_dir)?;
    }
    let mut reads_up_to = SURELY_READ;
    for minor in SURELY_READ.1 + 1..=MAX_PROBED_MINOR {
        let version = ArchiveVersion(1, minor);
        if !restore_reads(&pg_restore, version, probe_dir)? {
            break;
        }
        reads_up_to = version;
    }
    Ok(ToolCapabilities {
        dump,
        dump_version,
        restore_major,
        restore_version,
        reads_up_to,
    })
}

impl ToolCapabilities {
    /// Whether the probed pg_dump accepts `method` by name.
    pub fn dump_accepts(&self, method: CompressionMethod) -> bool {
        self.dump.accepts(method)
    }
}

/// The archive version in the header of a custom or tar archive file or of a directory
/// archive (its `toc.dat`); None for plain scripts.
pub fn archive_version(path: &Path, format: Format) -> io::Result<Option<ArchiveVersion>> {
    let (file, offset) = match format {
        Format::Plain => return Ok(None),
        Format::Custom => (path.to_path_buf(), 0),
        Format::Directory => (path.join("toc.dat"), 0),
        // toc.dat is the first member; its data follows the 512-byte tar header.
        Format::Tar => (path.to_path_buf(), 512),
    };
    // Only a regular file is opened: opening a FIFO (or another special file) for reading
    // can block for as long as nobody writes to it.
    if !std::fs::metadata(&file)?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", file.display()),
        ));
    }
    let mut f = File::open(&file)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut head = [0u8; 8];
    f.read_exact(&mut head)?;
    header_version(&head, &file.display().to_string())
}

/// The archive version in the first bytes of a custom or tar archive (`head`, at least 520
/// bytes for tar unless the archive is shorter); None for plain scripts. `what` names the
/// archive in messages.
pub fn archive_version_in(
    head: &[u8],
    format: Format,
    what: &str,
) -> io::Result<Option<ArchiveVersion>> {
    let offset = match format {
        Format::Plain => return Ok(None),
        Format::Custom | Format::Directory => 0,
        Format::Tar => 512,
    };
    header_version(head.get(offset..).unwrap_or_default(), what)
}

fn header_version(head: &[u8], what: &str) -> io::Result<Option<ArchiveVersion>> {
    if head.len() < 7 || &head[..5] != b"PGDMP" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} does not begin with an archive header"),
        ));
    }
    Ok(Some(ArchiveVersion(head[5], head[6])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The Debian PostgreSQL 15 and the trees `scripts/setup.sh` installs.
    fn bin_dir(major: u32) -> PathBuf {
        if major == 15 {
            PathBuf::from("/usr/lib/postgresql/15/bin")
        } else {
            let trees = std::env::var_os("BACKUP_EXT_PG_TREES")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/opt/backup_ext-pg"));
            trees.join(major.to_string()).join("bin")
        }
    }

    fn probed(major: u32) -> ToolCapabilities {
        let dir = crate::test_support::TempDir::new("caps");
        let caps = probe(&bin_dir(major), dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe leaves nothing behind"
        );
        caps
    }

    #[test]
    fn pg_dump_15_takes_levels_only_and_reads_up_to_1_14() {
        let caps = probed(15);
        assert_eq!(
            caps.dump,
            DumpTool {
                major: 15,
                ..DumpTool::default()
            }
        );
        assert_eq!(caps.restore_major, 15);
        assert_eq!(caps.reads_up_to, ArchiveVersion(1, 14));
        assert!(caps.dump_version.starts_with("pg_dump (PostgreSQL) 15."));
    }

    #[test]
    fn newer_tools_take_every_method_and_read_newer_archives() {
        for (major, reads) in [(16, 15), (17, 16), (18, 16)] {
            let caps = probed(major);
            assert_eq!(caps.dump, DumpTool::by_version(major), "pg_dump {major}");
            assert_eq!(caps.restore_major, major);
            assert_eq!(
                caps.reads_up_to,
                ArchiveVersion(1, reads),
                "pg_restore {major}"
            );
        }
    }

    #[test]
    fn a_pg_dump_without_a_library_is_seen_as_such() {
        // A wrapper that refuses zstd the way a pg_dump built without it does.
        let dir = crate::test_support::TempDir::new("caps");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let real = bin_dir(17);
        let script = format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --compress=zstd*) \
             echo 'pg_dump: error: this build does not support compression with ZSTD' >&2; \
             exit 1;; esac; done\nexec {} \"$@\"\n",
            real.join("pg_dump").display()
        );
        let wrapper = bin.join("pg_dump");
        std::fs::write(&wrapper, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(real.join("pg_restore"), bin.join("pg_restore")).unwrap();
        let probe_dir = dir.path().join("probe");
        std::fs::create_dir(&probe_dir).unwrap();
        let caps = probe(&bin, &probe_dir).unwrap();
        assert_eq!(
            caps.dump,
            DumpTool {
                zstd: false,
                ..DumpTool::by_version(17)
            }
        );
    }

    #[test]
    fn a_missing_tool_is_a_clear_error() {
        let dir = crate::test_support::TempDir::new("caps");
        let e = probe(dir.path(), dir.path()).unwrap_err();
        assert!(e.starts_with("cannot run "), "{e}");
        assert!(e.contains("pg_dump"), "{e}");
    }

    #[test]
    fn archive_headers_are_read_from_every_format() {
        let dir = crate::test_support::TempDir::new("caps");
        let custom = dir.path().join("a.dump");
        std::fs::write(&custom, b"PGDMP\x01\x10\x00\x04\x08\x01rest").unwrap();
        assert_eq!(
            archive_version(&custom, Format::Custom).unwrap(),
            Some(ArchiveVersion(1, 16))
        );
        let tar = dir.path().join("a.tar");
        let mut bytes = vec![0u8; 512];
        bytes.extend_from_slice(b"PGDMP\x01\x0e\x00\x04\x08\x03");
        std::fs::write(&tar, &bytes).unwrap();
        assert_eq!(
            archive_version(&tar, Format::Tar).unwrap(),
            Some(ArchiveVersion(1, 14))
        );
        let directory = dir.path().join("d");
        std::fs::create_dir(&directory).unwrap();
        std::fs::write(directory.join("toc.dat"), b"PGDMP\x01\x0f\x00\x04\x08\x05").unwrap();
        assert_eq!(
            archive_version(&directory, Format::Directory).unwrap(),
            Some(ArchiveVersion(1, 15))
        );
        assert_eq!(archive_version(&custom, Format::Plain).unwrap(), None);
        // A FIFO is not opened (that would wait for a writer).
        let fifo = dir.path().join("fifo.dump");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = archive_version(&fifo, Format::Custom).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().ends_with("is not a regular file"), "{e}");
        std::fs::write(&custom, b"-- PostgreSQL database dump").unwrap();
        let e = archive_version(&custom, Format::Custom).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn readers_name_the_first_major_that_reads_a_version() {
        assert_eq!(ArchiveVersion(1, 14).readers(), "pg_restore 15 or later");
        assert_eq!(ArchiveVersion(1, 15).readers(), "pg_restore 16 or later");
        assert_eq!(ArchiveVersion(1, 16).readers(), "pg_restore 17 or later");
        assert_eq!(
            ArchiveVersion(1, 17).readers(),
            "a pg_restore that reads archive version 1.17"
        );
    }
}
