//! inventory-projector
