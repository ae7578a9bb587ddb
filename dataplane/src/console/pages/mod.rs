//! One module per page of the console.

pub mod audit;
pub mod emails;
pub mod generations;
pub mod keys;
pub mod login;
pub mod overview;
pub mod suppressions;
pub mod usage;
pub mod users;
