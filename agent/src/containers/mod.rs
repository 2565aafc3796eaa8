//! The container engine. See the submodules for each concern.

pub mod network;
