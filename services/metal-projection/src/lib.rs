//! metal-projection
