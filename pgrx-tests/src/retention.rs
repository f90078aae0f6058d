//! Fabricated backup history for the retention and purge tests: succeeded
//! backups recorded with finish times in the past and small files under the
//! names the worker gives, and the rows purge leaves of a database.

use std::collections::BTreeMap;
use std::path::Path;

use postgres::Client;

use crate::files::folder_name;
use crate::paths::path_str;
use crate::sql::describe;
use crate::Cluster;

pub fn fabricated_content(id: i64) -> String {
    format!("fabricated backup {id}\n")
}

/// Records succeeded custom-format backups of `db` that finished `days`
/// days and `hours` hours ago (pairwise), oldest first so that backup ids
/// grow with time, and creates their (small) files with the names the
/// worker gives. Returns the new backup ids, oldest first.
pub fn fabricate(c: &Cluster, client: &mut Client, db: &str, ages: &[(i32, i32)]) -> Vec<i64> {
    let days: Vec<i32> = ages.iter().map(|a| a.0).collect();
    let hours: Vec<i32> = ages.iter().map(|a| a.1).collect();
    let rows = client
        .query(
            "WITH src AS (
                 SELECT now() - make_interval(days => d, hours => h) AS fin
                   FROM unnest($2::int[], $3::int[]) AS u(d, h)
             ), j AS (
                 INSERT INTO backup_ext.jobs
                        (kind, database, status, requested_at, started_at, finished_at,
                         request, label)
                 SELECT 'database', $1, 'succeeded', fin - interval '2 minutes',
                        fin - interval '1 minute', fin, '{}', 'fabricated'
                   FROM src
                  ORDER BY fin
                 RETURNING job_id, finished_at
             )
             INSERT INTO backup_ext.artifacts
                    (backup_id, job_id, kind, database, format, path, size_bytes, sha256)
             SELECT job_id, job_id, 'database', $1, 'custom',
                    format('%s/%s/%s-job%s.dump', $4::text, $5::text,
                           to_char(finished_at AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"'),
                           lpad(job_id::text, 12, '0')),
                    octet_length('fabricated backup ' || job_id || E'\\n'),
                    encode(sha256(convert_to('fabricated backup ' || job_id || E'\\n', 'UTF8')),
                           'hex')
               FROM j
             RETURNING backup_id, path",
            &[&db, &days, &hours, &path_str(&c.backups), &folder_name(db)],
        )
        .unwrap_or_else(|e| panic!("fabricating history of {db}: {}", describe(&e)));
    let mut ids = Vec::new();
    for r in &rows {
        let id: i64 = r.get(0);
        let path: String = r.get(1);
        c.write_server_file(Path::new(&path), fabricated_content(id).as_bytes());
        ids.push(id);
    }
    ids.sort();
    // The fabrication relies on ids growing with the finish time.
    let by_time: Vec<i64> = client
        .query(
            "SELECT backup_id FROM backup_ext.backups WHERE backup_id = ANY($1)
              ORDER BY finished_at, backup_id",
            &[&ids],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        by_time, ids,
        "backup ids of {db} do not follow finish times"
    );
    ids
}

/// The id of `db`'s fabricated backup that finished `days` days and
/// `hours` hours before `now()` (to the minute).
pub fn fabricated_id(client: &mut Client, db: &str, days: i32, hours: i32) -> i64 {
    client
        .query_one(
            "SELECT backup_id FROM backup_ext.backups
              WHERE database = $1
                AND abs(extract(epoch FROM now() - make_interval(days => $2, hours => $3)
                                           - finished_at)) < 60",
            &[&db, &days, &hours],
        )
        .unwrap_or_else(|e| panic!("backup of {db} {days} d {hours} h ago: {}", describe(&e)))
        .get(0)
}

/// (backup_id, status, path) of every row of `db` in backup_ext.backups.
pub fn rows_of(client: &mut Client, db: &str) -> BTreeMap<i64, (String, Option<String>)> {
    client
        .query(
            "SELECT backup_id, status, path FROM backup_ext.backups WHERE database = $1",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}
