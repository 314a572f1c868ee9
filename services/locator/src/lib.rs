//! locator
