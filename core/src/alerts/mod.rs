//! Alerts: where a message about a job's outcome goes (`add_alert()`), what it says, and the
//! thread that sends it. Free of PostgreSQL: the worker hands deliveries to [`Sender`] and
//! collects the results without ever waiting for the network.

mod config;
mod payload;
mod send;

pub use config::{is_loopback, parse_options};
pub use config::{AlertConfig, AlertKind, AlertOptions, Event, TlsMode, ALERT_KINDS, EVENTS};
pub use payload::{first_line, render, sign, AlertEvent, Rendered, SIGNATURE_HEADER};
pub use send::{retry_delay, send_now, Delivery, DeliveryResult, Sender};
