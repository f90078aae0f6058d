//! `backup_ext.stall_timeout`: a job whose activity (see [`crate::job::JobRun::activity`])
//! has not changed for the limit is stalled.

use std::time::{Duration, Instant};

/// When a job last got further.
pub struct StallWatch {
    pub limit: Duration,
    seen: Option<u64>,
    since: Instant,
}

impl StallWatch {
    pub fn new(limit: Duration) -> StallWatch {
        StallWatch {
            limit,
            seen: None,
            since: Instant::now(),
        }
    }

    /// Takes the job's activity now; true once it has not changed for the limit. A step that
    /// is not watched (None) starts the wait afresh.
    pub fn stalled(&mut self, activity: Option<u64>) -> bool {
        if activity.is_none() || activity != self.seen {
            self.seen = activity;
            self.since = Instant::now();
            return false;
        }
        self.since.elapsed() > self.limit
    }

    /// The error of a job stopped for stalling.
    pub fn message(&self) -> String {
        let limit = if self.limit.subsec_millis() == 0 {
            format!("{} s", self.limit.as_secs())
        } else {
            format!("{} ms", self.limit.as_millis())
        };
        format!(
            "stalled: no bytes read from the archive and no table finished for {limit} \
             (backup_ext.stall_timeout); stopped"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::sleep;

    const LIMIT: Duration = Duration::from_millis(40);

    #[test]
    fn unchanged_activity_stalls_after_the_limit() {
        let mut w = StallWatch::new(LIMIT);
        assert!(!w.stalled(Some(5)));
        assert!(!w.stalled(Some(5)));
        sleep(LIMIT * 2);
        assert!(w.stalled(Some(5)));
    }

    #[test]
    fn any_change_starts_the_wait_again() {
        let mut w = StallWatch::new(LIMIT);
        assert!(!w.stalled(Some(5)));
        sleep(LIMIT * 2);
        // Counters may also go down (a new step starts counting from 0): a change all the same.
        assert!(!w.stalled(Some(3)));
        assert!(!w.stalled(Some(3)));
        sleep(LIMIT * 2);
        assert!(w.stalled(Some(3)));
    }

    #[test]
    fn steps_that_are_not_watched_never_stall() {
        let mut w = StallWatch::new(LIMIT);
        assert!(!w.stalled(None));
        sleep(LIMIT * 2);
        assert!(!w.stalled(None));
        assert!(!w.stalled(Some(1)));
        assert!(!w.stalled(Some(1)));
    }

    #[test]
    fn the_message_names_the_limit() {
        assert_eq!(
            StallWatch::new(Duration::from_secs(2)).message(),
            "stalled: no bytes read from the archive and no table finished for 2 s \
             (backup_ext.stall_timeout); stopped"
        );
        assert!(StallWatch::new(Duration::from_millis(1500))
            .message()
            .contains(" for 1500 ms "));
    }
}
