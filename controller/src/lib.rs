//! The live controller (issue 6, in progress): the same decision core as the twin, against
//! PostgreSQL, Docker and Hetzner Cloud. So far: the store (`Store` with PostgreSQL and
//! in-memory implementations, numbered migrations run at connect).

pub mod api;
pub mod archive;
pub mod cloud;
pub mod docker;
pub mod fake_hetzner;
pub mod live;
pub mod mcping;
pub mod memory;
pub mod pg;
pub mod store;

pub use memory::MemoryStore;
pub use pg::PgStore;
pub use store::{Store, StoreError};
