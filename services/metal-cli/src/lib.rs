//! metal-cli
