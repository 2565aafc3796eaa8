//! The market's transport, shared by the provider's agent and the
//! publisher's command: a libp2p node whose identity is the chain key
//! ([`session`]), one stream per market session carrying length-prefixed
//! [`zennet_protocol::market::Msg`] frames, and a blocking JSON-RPC client
//! for the chain node ([`rpc`]), a WebSocket subscription to new
//! announcements ([`subscribe`]), and SSH tunnels over the same connection
//! ([`tunnel`]).

pub mod rpc;
pub mod session;
pub mod subscribe;
pub mod tunnel;

pub use libp2p::Multiaddr;
pub use session::{Node, Session};
