//! Running the client tools as children without blocking the caller.

pub mod capabilities;
pub mod child;
pub mod command;
pub mod step;
pub mod stream;
pub mod version;
