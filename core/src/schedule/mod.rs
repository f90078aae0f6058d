//! Built-in schedules: a standard 5-field cron expression, evaluated in UTC,
//! and the backup command it runs, stored as JSON.

pub mod command;
pub mod cron;

pub use command::{
    validate_schedule_name, ScheduleCommand, MAX_LABEL_CHARS, MAX_SCHEDULE_NAME_CHARS,
};
pub use cron::{CronSchedule, CRON_HINT};
