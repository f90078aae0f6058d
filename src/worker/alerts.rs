//! The worker's side of alerts. Deliveries are claimed in short transactions and handed to the
//! I/O thread (`backup_core::alerts::Sender`); results are collected on later ticks. Nothing
//! here waits for the network, so a receiver that never answers cannot hold up a job.

use std::time::{Duration, Instant};

use backup_core::alerts::{DeliveryResult, Sender};
use pgrx::prelude::*;

use super::txn::spi;
use crate::catalog::alerts;
use crate::settings;

/// How often stale databases and lagging copies are looked for.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Claims are at most this often, however busy the loop is.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// Tick while sends are in flight, so their results are recorded soon after they arrive.
const IN_FLIGHT_TICK: Duration = Duration::from_millis(250);
const MAX_IN_FLIGHT: usize = 16;
/// A claimed row is not due again for this long: longer than any send may take
/// (options.timeout is at most 60 s, plus the sender's grace), so it is never sent twice at
/// once, and a try lost to a crash is made again after it.
const LEASE_SECS: i32 = 120;

#[derive(Default)]
pub(super) struct Outbox {
    sender: Option<Sender>,
    last_check: Option<Instant>,
    last_claim: Option<Instant>,
    /// When the next delivery not in flight is due, as of the last claim.
    next_due: Option<Instant>,
    /// A claim was skipped because the last one was too recent.
    claim_pending: bool,
}

impl Outbox {
    /// Records results that have arrived, looks for stale databases and lagging copies when due,
    /// and claims due deliveries at most every [`CLAIM_EVERY`]; opens no transaction when there
    /// is nothing to do, so a busy loop's fast ticks cost nothing here.
    pub(super) fn tick(&mut self) {
        let results = self
            .sender
            .as_mut()
            .map(Sender::results)
            .unwrap_or_default();
        let claim_due = self.last_claim.is_none_or(|t| t.elapsed() >= CLAIM_EVERY);
        let check_due = self.last_check.is_none_or(|t| t.elapsed() >= CHECK_EVERY);
        if !claim_due {
            self.claim_pending = true;
        }
        if results.is_empty() && !claim_due && !check_due {
            return;
        }
        match spi(alerts::outbox_exists) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warning!("backup_ext: cannot look for the alert tables: {e}");
                return;
            }
        }
        self.record(results);
        if check_due {
            self.check();
        }
        if claim_due {
            self.claim();
        }
    }

    /// How long the loop may sleep without delaying a send or the record of its result.
    pub(super) fn wait_hint(&self) -> Option<Duration> {
        if self
            .sender
            .as_ref()
            .is_some_and(|s| !s.in_flight().is_empty())
        {
            return Some(IN_FLIGHT_TICK);
        }
        if self.claim_pending {
            return Some(CLAIM_EVERY);
        }
        self.next_due.map(|at| {
            at.saturating_duration_since(Instant::now())
                .max(IN_FLIGHT_TICK)
        })
    }

    fn record(&mut self, results: Vec<DeliveryResult>) {
        if results.is_empty() {
            return;
        }
        let retries = settings::alert_retries();
        for r in &results {
            if let Err(e) = &r.result {
                log!("backup_ext: alert delivery {} failed: {e}", r.id);
            }
        }
        let recorded = spi(|| {
            for r in &results {
                alerts::record_delivery(r.id, &r.result, retries)?;
            }
            Ok(())
        });
        if let Err(e) = recorded {
            // The rows keep their lease and are tried again once it ends.
            warning!("backup_ext: cannot record alert deliveries: {e}");
        }
        self.claim_pending = true;
    }

    fn check(&mut self) {
        self.last_check = Some(Instant::now());
        match spi(|| Ok(alerts::check_stale()? + alerts::check_copy_lag()?)) {
            Ok(0) => {}
            Ok(_) => self.claim_pending = true,
            Err(e) => warning!("backup_ext: cannot check for stale backups or lagging copies: {e}"),
        }
    }

    fn claim(&mut self) {
        self.last_claim = Some(Instant::now());
        self.claim_pending = false;
        if self.sender.is_none() {
            match Sender::start() {
                Ok(sender) => self.sender = Some(sender),
                Err(e) => {
                    warning!("backup_ext: cannot start the alert sender: {e}");
                    return;
                }
            }
        }
        let Some(sender) = self.sender.as_mut() else {
            return;
        };
        let in_flight: Vec<i64> = sender.in_flight().iter().copied().collect();
        let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len()) as i64;
        let claimed = spi(|| {
            let claimed = if room > 0 {
                alerts::claim_due_deliveries(room, &in_flight, LEASE_SECS)?
            } else {
                Vec::new()
            };
            let mut busy = in_flight.clone();
            busy.extend(claimed.iter().map(|c| match c {
                Ok(d) => d.id,
                Err((id, _)) => *id,
            }));
            Ok((claimed, alerts::next_delivery_due(&busy)?))
        });
        let (claimed, next_due) = match claimed {
            Ok(c) => c,
            Err(e) => {
                warning!("backup_ext: cannot claim alert deliveries: {e}");
                return;
            }
        };
        self.next_due =
            next_due.map(|secs| Instant::now() + Duration::from_secs_f64(secs.clamp(0.0, 86400.0)));
        let mut unreadable = Vec::new();
        for delivery in claimed {
            match delivery {
                Ok(d) => {
                    if !sender.submit(d.clone()) {
                        unreadable.push((d.id, "the alert sender has stopped".to_string()));
                    }
                }
                Err(e) => unreadable.push(e),
            }
        }
        if unreadable
            .iter()
            .any(|(_, e)| e == "the alert sender has stopped")
        {
            self.sender = None;
        }
        if !unreadable.is_empty() {
            let retries = settings::alert_retries();
            if let Err(e) = spi(|| {
                for (id, e) in &unreadable {
                    alerts::record_delivery(*id, &Err(e.clone()), retries)?;
                }
                Ok(())
            }) {
                warning!("backup_ext: cannot record alert deliveries: {e}");
            }
        }
    }
}
