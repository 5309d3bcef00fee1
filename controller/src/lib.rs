//! The live controller: the same decision core as the twin, against PostgreSQL (`store`,
//! `pg`, `memory`), Docker/Podman nodes (`docker`, `mcping`, `archive`) and Hetzner Cloud
//! (`cloud`; `fake_hetzner` for tests and local runs). `live` is the engine, `api` the HTTP
//! API, `config` and `serve` the daemon (`conductor serve`).

pub mod api;
pub mod archive;
pub mod billing;
pub mod bootstrap;
pub mod cloud;
pub mod config;
pub mod docker;
pub mod driver;
pub mod events;
pub mod export;
pub mod fake;
pub mod fake_hetzner;
pub mod forecasting;
pub mod live;
pub mod mcping;
pub mod memory;
pub mod openapi;
pub mod pg;
pub mod pki;
pub mod serve;
pub mod store;
pub mod template;

pub use memory::MemoryStore;
pub use pg::PgStore;
pub use store::{Store, StoreError};
